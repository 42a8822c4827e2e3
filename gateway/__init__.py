"""upload-gateway: a reverse proxy that lets browsers and API clients upload straight to S3.

The package is layered; a module imports only from its own layer or those below it. The
contracts in pyproject.toml (``[tool.importlinter]``) hold these lists and scripts/test.sh
checks them (``lint-imports``); docs/architecture.md explains them.

1. Pure core, no I/O: values, problems, signing, rules, sniff, keys, tokens, webhook, targets,
   jsonbody, forms, headers, config, endpoints, reasons (and completion.naming). None of it imports
   aiohttp, aiobotocore, botocore or prometheus_client; values imports nothing third-party.
2. Infrastructure: requestkeys, requestids, sessions, logs, metrics.
3. I/O: completion, identity, storage, upstream, pools, _fast (aiohttp internals in
   quarantine), buckets, client, localnames.
3b. The services: services (built once per app, passed to each constructor).
4. HTTP surface: front, proxy, guard, ops, protocols, render, origins.
5. Running it: __main__, cli, server, app, listen, demo, docgen.
"""

__version__ = "0.1.0"
