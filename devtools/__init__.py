"""Development tools that build and compare, never used by the nodes: tiny models of each family made from the
host's own classes (fixtures), quantized test files, the host's own trainer run side by side (native), and the
fixed-sample loss that grades any trainer. Tests, benchmarks and the demo import them; ``host/`` never does."""
