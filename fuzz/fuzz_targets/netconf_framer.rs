#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outpost_fuzz_targets::netconf_framer(data));
