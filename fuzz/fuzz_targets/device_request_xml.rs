#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outpost_fuzz_targets::device_request_xml(data));
