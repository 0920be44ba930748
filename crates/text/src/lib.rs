//! Text layer of ds4rs: tokenizer, chat rendering, DSML tool calls.
