//! DSML.
