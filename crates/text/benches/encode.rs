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

/// This crate's own sources, each once: code and English comments, what prompts of coding
/// agents mostly are.
fn source_code() -> String {
    fn walk(dir: &std::path::Path, out: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&p).expect("source"));
            }
        }
    }
    let mut text = String::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut text,
    );
    text
}

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let json = std::fs::read_to_string(dir.join("tokenizer.json")).expect("tokenizer.json");
    let tok = Tokenizer::from_tokenizer_json(&json).expect("tokenizer");
    let mut group = c.benchmark_group("encode");
    for (name, text) in [("mixed_corpus", corpus()), ("source_code", source_code())] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| b.iter(|| tok.encode(&text)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
