//! Any byte string must parse to a header or to an error, never a panic, and
//! every tensor the parser accepts must lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = gguf::GgufHeader::parse(data) {
        for t in header.tensors() {
            let range = header.tensor_range(t);
            assert!(range.end as usize <= data.len());
            let _ = &data[range.start as usize..range.end as usize];
        }
        for (key, value) in header.metadata().iter() {
            let _ = (key.len(), format!("{value}"));
        }
    }
});
