"""One adapter per client protocol: parse the client's request, call the core, shape the answer."""
