// Kernels that choose the next token on the device (engine::sampler's
// rules), so only the chosen id crosses the bus. Included by ds4.cu.
