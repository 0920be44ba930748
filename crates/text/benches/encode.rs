//! Encode throughput on one core, reported in MB/s (criterion's bytes throughput).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use text::Tokenizer;

fn corpus() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let lines = std::fs::read_to_string(dir.join("tokenizer_corpus.jsonl")).expect("corpus");
    let mut text = String::new();
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        text.push_str(v["t"].as_str().expect("text"));
        text.push('\n');
    }
    text
}

fn english() -> String {
    // Prose and code: what a chat prompt mostly is.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut text = String::new();
    for _ in 0..4 {
        for f in [
            "tokenizer/mod.rs",
            "tokenizer/pretokenize.rs",
            "tokenizer/bpe.rs",
        ] {
            text.push_str(&std::fs::read_to_string(dir.join(f)).expect("source"));
        }
    }
    text
}

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let json = std::fs::read_to_string(dir.join("tokenizer.json")).expect("tokenizer.json");
    let tok = Tokenizer::from_tokenizer_json(&json).expect("tokenizer");
    let mut group = c.benchmark_group("encode");
    for (name, text) in [("mixed_corpus", corpus()), ("code_and_prose", english())] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| b.iter(|| tok.encode(&text)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
