//! `testenv`: see the library's documentation.

fn main() {}
