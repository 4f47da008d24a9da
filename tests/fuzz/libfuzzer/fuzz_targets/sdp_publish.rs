#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| samtal_fuzz::sdp_publish(data));
