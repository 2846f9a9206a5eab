"""The `synth` command line: `cli.main` and one module per verb (`register(sub)`)."""
