#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| samtal_fuzz::jwt(data));
