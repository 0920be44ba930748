//! One module per subcommand.

pub mod convert;
pub mod dequant;
pub mod detokenize;
pub mod inspect;
pub mod logits;
pub mod pull;
pub mod render;
pub mod run;
pub mod synth;
pub mod tokenize;
