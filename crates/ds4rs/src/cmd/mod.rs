//! One module per subcommand.

pub mod convert;
pub mod dequant;
pub mod inspect;
pub mod logits;
pub mod synth;
