#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether::fuzzing::log_uri(data));
