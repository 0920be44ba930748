//! One module per subcommand.

pub mod backend;
pub mod bench;
pub mod convert;
pub mod dequant;
pub mod detokenize;
#[cfg(feature = "cuda")]
pub mod gpu_check;
pub mod inspect;
pub mod instance_lock;
pub mod logits;
pub mod pull;
pub mod render;
pub mod run;
#[cfg(feature = "cuda")]
pub mod selftest;
pub mod serve;
pub mod synth;
pub mod tokenize;
