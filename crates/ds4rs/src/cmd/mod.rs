//! One module per subcommand.

pub mod dequant;
pub mod inspect;
