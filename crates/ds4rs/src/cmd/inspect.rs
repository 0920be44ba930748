//! `ds4rs inspect`: what a GGUF file holds, for people (`--json` for tools).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use gguf::{GgmlType, GgufFile, MetaValue};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF file to read.
    pub file: PathBuf,
    /// Print one JSON object with every metadata value in full.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let f =
        GgufFile::open(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&f))?);
    } else {
        print!("{}", to_text(&f));
    }
    Ok(())
}

/// The `--json` document: `{"version", "alignment", "data_start",
/// "metadata": {key: value}, "tensors": [{"name", "type", "shape",
/// "offset", "bytes"}]}`; offsets are relative to `data_start`, as stored.
pub fn to_json(f: &GgufFile) -> Value {
    let h = f.header();
    let metadata: serde_json::Map<String, Value> = h
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_owned(), meta_json(v)))
        .collect();
    let tensors: Vec<Value> = h
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "shape": t.dims,
                "offset": t.offset,
                "bytes": t.n_bytes,
            })
        })
        .collect();
    json!({
        "version": h.version,
        "alignment": h.alignment,
        "data_start": h.data_start,
        "metadata": metadata,
        "tensors": tensors,
    })
}

/// Floats go through their shortest decimal form so that an f32 `1e-6`
/// prints as `1e-6`, not as its f64 widening; NaN and infinities, which
/// JSON cannot hold, become `null`.
fn meta_json(v: &MetaValue) -> Value {
    let float = |s: String| {
        s.parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number)
    };
    match v {
        MetaValue::U8(x) => json!(x),
        MetaValue::I8(x) => json!(x),
        MetaValue::U16(x) => json!(x),
        MetaValue::I16(x) => json!(x),
        MetaValue::U32(x) => json!(x),
        MetaValue::I32(x) => json!(x),
        MetaValue::U64(x) => json!(x),
        MetaValue::I64(x) => json!(x),
        MetaValue::F32(x) => float(x.to_string()),
        MetaValue::F64(x) => float(x.to_string()),
        MetaValue::Bool(x) => json!(x),
        MetaValue::String(s) => json!(s),
        MetaValue::Array(a) => Value::Array(a.items.iter().map(meta_json).collect()),
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

fn to_text(f: &GgufFile) -> String {
    use std::fmt::Write;
    let h = f.header();
    let mut s = String::new();
    let _ = writeln!(s, "file:      {}", f.path().display());
    let _ = writeln!(
        s,
        "size:      {} ({})",
        f.file_len(),
        human_bytes(f.file_len())
    );
    let _ = writeln!(s, "version:   {}", h.version);
    let _ = writeln!(s, "alignment: {}", h.alignment);
    let _ = writeln!(s, "data at:   {}", h.data_start);
    let _ = writeln!(s, "\nmetadata ({} keys):", h.metadata().len());
    let key_w = h.metadata().iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in h.metadata().iter() {
        let ty = match v {
            MetaValue::Array(a) => format!("{}[{}]", v.value_type(), a.elem_type),
            _ => v.value_type().to_string(),
        };
        let _ = writeln!(s, "  {k:key_w$}  {ty:<16} {v}");
    }
    let _ = writeln!(s, "\ntensors ({}):", h.tensors().len());
    let name_w = h.tensors().iter().map(|t| t.name.len()).max().unwrap_or(4);
    let _ = writeln!(
        s,
        "  {:name_w$}  {:<8} {:<24} {:>14} {:>14}",
        "name", "type", "shape", "offset", "bytes"
    );
    let mut totals: BTreeMap<u32, (GgmlType, usize, u64)> = BTreeMap::new();
    for t in h.tensors() {
        let shape = format!("{:?}", t.dims);
        let _ = writeln!(
            s,
            "  {:name_w$}  {:<8} {:<24} {:>14} {:>14}",
            t.name,
            t.ty.name(),
            shape,
            t.offset,
            t.n_bytes
        );
        let e = totals.entry(t.ty.id()).or_insert((t.ty, 0, 0));
        e.1 += 1;
        e.2 += t.n_bytes;
    }
    let _ = writeln!(s, "\ntotals by type:");
    let mut all = (0usize, 0u64);
    for (ty, count, bytes) in totals.values() {
        let _ = writeln!(
            s,
            "  {:<8} {count:>6} tensors {bytes:>16} bytes ({})",
            ty.name(),
            human_bytes(*bytes)
        );
        all.0 += count;
        all.1 += bytes;
    }
    let _ = writeln!(
        s,
        "  {:<8} {:>6} tensors {:>16} bytes ({})",
        "all",
        all.0,
        all.1,
        human_bytes(all.1)
    );
    s
}
