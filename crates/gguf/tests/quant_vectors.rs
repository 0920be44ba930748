//! Spec §8.3 test vectors: quantizer output and its decode, byte for byte.

use gguf::quant::{dequantize, quantize};
use gguf::GgmlType;
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// 2 rows x 512 columns of the §8.3 input.
fn input() -> Vec<f32> {
    (0..1024u32)
        .map(|i| {
            let a = ((i * 7919 + 13) % 2001) as i32 - 1000;
            a as f32 * 0.00002
        })
        .collect()
}

fn importance() -> Vec<f32> {
    (0..512u32)
        .map(|c| (((c * 31 + 7) % 17) + 1) as f32 * 0.125)
        .collect()
}

#[test]
fn inputs_match_spec() {
    assert_eq!(
        sha(&f32_bytes(&input())),
        "bc05b168c909b8c2a437e690ebde2ceafe2e9382bbdbdc3ab0f0c8e601bb39fa"
    );
    assert_eq!(
        sha(&f32_bytes(&importance())),
        "e410b5e4f9256ea9ea5cb1c88d0e5bad7858c3da42f4bb6b4682cb3448a795a6"
    );
}

fn check(ty: GgmlType, imp: bool, len: usize, hash: &str, head: &str) -> Vec<u8> {
    let w = importance();
    let q = quantize(ty, &input(), 512, imp.then_some(&w[..])).unwrap();
    assert_eq!(q.len(), len, "{ty} size");
    let head_hex: String = q[..16].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(head_hex, head, "{ty} imp={imp} first bytes");
    assert_eq!(sha(&q), hash, "{ty} imp={imp} hash");
    q
}

fn check_decode(ty: GgmlType, q: &[u8], hash: &str, head: [u32; 4]) {
    let mut y = vec![0.0f32; 1024];
    dequantize(ty, q, &mut y).unwrap();
    let bits: Vec<u32> = y[..4].iter().map(|v| v.to_bits()).collect();
    assert_eq!(bits, head, "{ty} y[0..4]");
    assert_eq!(sha(&f32_bytes(&y)), hash, "{ty} dequantized hash");
}

#[test]
fn q8_0_vector() {
    let q = check(
        GgmlType::Q8_0,
        false,
        1088,
        "31ce1ce5caf2b1ed195e8ec9549e58c341ca26ac1904163b5cdb054bdd7c3d45",
        "180981786d62574c41362b20150afff4",
    );
    check_decode(
        GgmlType::Q8_0,
        &q,
        "6f73e2e39743af3e91bdbc775fb19f781c90781942ae0ea0ee14d98da1c0db36",
        [0xbca1ba00, 0x3c98d000, 0x3c8ace00, 0x3c799800],
    );
}

#[test]
fn q4_k_vectors() {
    check(
        GgmlType::Q4K,
        false,
        576,
        "f40cac47b04d71cdc7ee7fda9cf2d560a07c420a27ce82e23bac449c1d325e7f",
        "aa02320dfffffffffefefdfbdfcfffcf",
    );
    let q = check(
        GgmlType::Q4K,
        true,
        576,
        "15ca36a7ae56a9b2f7cd5580214b9f7a1104751f026f9b55cd5f8235e6bacff7",
        "ad022a0dfefffffffefffefbdedffece",
    );
    check_decode(
        GgmlType::Q4K,
        &q,
        "f433c9493f9d77f55242a85eda19f5f25cc02a3479ee75036d37baf1e342d417",
        [0xbca01600, 0x3c96f940, 0x3c823c80, 0x3c823c80],
    );
}

#[test]
fn q2_k_vectors() {
    check(
        GgmlType::Q2K,
        false,
        336,
        "42f3fe4fd8bb54ac009133d7e40d7f1ad1b2fa73a2aae8ee55dd4fc14c1e6ce6",
        "efcefa39ceef5aceef6aceef89eeef99",
    );
    let q = check(
        GgmlType::Q2K,
        true,
        336,
        "dffeaa74df594e13df55258ea8f644d972d6d2e519ba56daea023729e1cfc64b",
        "ddddf929adbe69cfee58ddcd9acece88",
    );
    check_decode(
        GgmlType::Q2K,
        &q,
        "dea6e4f99c822e643d8b6d942b5167c78e12714277d2b351612bc46d226d9888",
        [0xbc84d800, 0x3c6d0c00, 0x3c6d0c00, 0x3c6d0c00],
    );
}

#[test]
fn iq2_xxs_vector() {
    let q = check(
        GgmlType::Iq2Xxs,
        true,
        264,
        "670b31fb4a50054cacd0ca3d7d72f5819620c774b24a67cd7ed7c9c8a7ce22f2",
        "a2085500f55501f81ff000f55500f03f",
    );
    check_decode(
        GgmlType::Iq2Xxs,
        &q,
        "8658312772784e5da9face8fad93b9363a769bc65e0b33ea9ed1d0dd1c7dc7ef",
        [0xbcc0fc50, 0x3cc0fc50, 0x3c6066e0, 0x3c6066e0],
    );
}

/// The output must not depend on how rayon splits the rows (§4: rows are
/// independent): a one-thread pool gives the same bytes as the global one.
#[test]
fn quantize_is_thread_count_independent() {
    let x: Vec<f32> = (0..64 * 512)
        .map(|i| ((i * 37 % 1001) as f32 - 500.0) * 1e-3)
        .collect();
    let w = importance();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q2K,
        GgmlType::Iq2Xxs,
    ] {
        let many = quantize(ty, &x, 512, Some(&w)).unwrap();
        let one = pool.install(|| quantize(ty, &x, 512, Some(&w)).unwrap());
        assert_eq!(many, one, "{ty}");
    }
}
