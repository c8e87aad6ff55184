//! Log URIs: file:// and binary:// byte-exact, both streams into one file.

use super::*;

/// A logger as containerd's binary:// protocol expects: fds 3 and 4 are the
/// container's stdout and stderr, fd 5 says ready.
fn write_logger(dir: &Path) -> PathBuf {
    let path = dir.join("logger.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\n\
         echo \"$CONTAINER_ID $CONTAINER_NAMESPACE\" > \"$3\"\n\
         cat <&3 > \"$1\" &\n\
         cat <&4 > \"$2\" &\n\
         printf x >&5\n\
         exec 5>&-\n\
         wait\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "current_thread")]
async fn file_and_binary_log_uris_are_byte_exact() {
    let f = running(|_| {}).await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let blob = f.bundle().join("rootfs/blob");
    std::fs::write(&blob, &data).unwrap();

    let log = out_path(&f, "logs/file.log");
    let uri = format!("file://{}", s(&log));
    let e = Exec::add(&f, "file", &["/bin/cat", "/blob"], ("", &uri)).await;
    assert_eq!(e.run().await, 0);
    assert!(
        std::fs::read(&log).unwrap() == data,
        "file:// output differs"
    );
    let mode = std::fs::metadata(&log).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640
    );

    let logger = write_logger(f.dir.path());
    let (lout, lerr, lenv) = (
        out_path(&f, "l.out"),
        out_path(&f, "l.err"),
        out_path(&f, "l.env"),
    );
    let uri = format!(
        "binary://{}?{}&{}&{}",
        s(&logger),
        s(&lout),
        s(&lerr),
        s(&lenv)
    );
    let e = Exec::add(
        &f,
        "bin",
        &["/bin/sh", "-c", "cat /blob; echo oops >&2"],
        ("", &uri),
    )
    .await;
    e.start().await.unwrap();
    assert_eq!(e.wait().await, 0);
    eventually("the logger has written everything", || {
        std::fs::metadata(&lout).map(|m| m.len()).unwrap_or(0) == data.len() as u64
            && std::fs::read_to_string(&lerr).unwrap_or_default() == "oops\n"
    });
    assert!(
        std::fs::read(&lout).unwrap() == data,
        "binary:// output differs"
    );
    assert_eq!(
        std::fs::read_to_string(&lenv).unwrap().trim(),
        format!("{} {}", f.id, f.namespace)
    );
    e.delete().await.unwrap();

    // A logger that does not exist: a clear error at Start, nothing runs.
    let uri = "binary:///no/such/logger";
    let e = Exec::add(&f, "nolog", &["/bin/true"], ("", uri)).await;
    let (_, msg) = code_of(e.start().await);
    assert!(msg.contains("/no/such/logger"), "{msg}");
    e.delete().await.unwrap();
    stop_init(&f).await;
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn both_streams_into_one_file_lose_nothing() {
    let f = running(|_| {}).await;
    let script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; cat /blob; echo end >&2";
    let blob: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(f.bundle().join("rootfs/blob"), &blob).unwrap();
    let expected = 5 * (5 + 5) + blob.len() + 4;
    // A plain path for both, and a file:// URI (which covers both).
    let plain = out_path(&f, "both.log");
    std::fs::write(&plain, b"").unwrap();
    let req = ExecProcessRequest {
        id: f.id.clone(),
        exec_id: "plain".into(),
        stdout: s(&plain),
        stderr: s(&plain),
        spec: MessageField::some(process_spec(&["/bin/sh", "-c", script])),
        ..Default::default()
    };
    f.client.exec(ctx(), &req).await.unwrap();
    let e = Exec {
        client: &f.client,
        id: f.id.clone(),
        exec_id: "plain".into(),
    };
    assert_eq!(e.run().await, 0);
    let uri_file = out_path(&f, "uri.log");
    let uri = format!("file://{}", s(&uri_file));
    let e = Exec::add(&f, "uri", &["/bin/sh", "-c", script], ("", &uri)).await;
    assert_eq!(e.run().await, 0);
    for file in [&plain, &uri_file] {
        let text = std::fs::read(file).unwrap();
        assert_eq!(
            text.len(),
            expected,
            "{}: bytes lost or overwritten",
            file.display()
        );
        let t = String::from_utf8_lossy(&text);
        for i in 1..=5 {
            assert!(t.contains(&format!("out{i}\n")) && t.contains(&format!("err{i}\n")));
        }
    }
    f.stop_and_delete().await;
    f.shutdown_and_wait_exit().await;
}
