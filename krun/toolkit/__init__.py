"""The Kontain toolkit: build payloads (`krun payload`), package them as minimal OCI
images (`krun image`), and run them in one line (`krun km`)."""
