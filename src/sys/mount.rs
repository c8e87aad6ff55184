//! Mount system calls that take raw pointers: detached, idmapped copies of
//! a mount tree, and mounting from a directory in a child before it execs.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The kernel's `struct mount_attr` (mount_setattr(2)).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

fn c_path(path: &std::path::Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

/// A detached copy of the mount tree at `source` (recursive), idmapped
/// through the user namespace `userns` (and read-only if `readonly`), as a
/// descriptor ready to be attached with [`attach_mount`]. Dropping it
/// unmounts the copy.
pub fn idmapped_clone(
    source: &std::path::Path,
    userns: std::os::fd::BorrowedFd<'_>,
    readonly: bool,
) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let path = c_path(source)?;
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
    // SAFETY: open_tree reads the NUL-terminated `path`, which outlives the
    // call, and returns a new descriptor or -1; nothing else is touched.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned by the kernel and is owned by
    // nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: mount_setattr reads `attr` (its size given) and the empty
    // path, both alive for the call, and acts on the descriptor we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// Attaches the detached mount `tree` (from [`idmapped_clone`]) on `target`.
pub fn attach_mount(tree: std::os::fd::BorrowedFd<'_>, target: &std::path::Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let path = c_path(target)?;
    let empty = c"";
    // SAFETY: move_mount reads the two NUL-terminated paths, alive for the
    // call, and moves the mount behind the borrowed descriptor.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd`'s child mount `fstype` on `target` from within `dir` before it
/// execs, so that `data` may name paths relative to `dir` (how an overlay
/// with more lower layers than one page of absolute paths holds is mounted).
/// The mount happens in the child, in the mount namespace it shares with the
/// shim; spawn fails with the mount's error.
pub fn mount_from_dir(
    cmd: &mut Command,
    dir: &std::path::Path,
    source: &str,
    target: &std::path::Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let bad = |_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a mount argument has a NUL byte",
        )
    };
    let source = std::ffi::CString::new(source).map_err(bad)?;
    let fstype = std::ffi::CString::new(fstype).map_err(bad)?;
    let data = std::ffi::CString::new(data).map_err(bad)?;
    let target = c_path(target)?;
    cmd.current_dir(dir);
    // SAFETY: the closure runs between fork and exec in the child, after the
    // chdir to `dir`, where only async-signal-safe functions may be called:
    // mount is a plain system call, its arguments are C strings made before
    // the fork and owned by the closure, and it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let rc = libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags,
                data.as_ptr().cast(),
            );
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}
