"""``upload-gateway demo``: an embedded S3, a small upstream app and the gateway, on loopback.

``app`` is the upstream app's integration with the gateway (login header, auth_request for API
tokens, signed completions and deletions, presigned downloads) and a worked example of it;
``views`` and ``pages`` are its HTML, ``library`` its in-memory records, ``tokens`` its API
tokens, ``assets`` finds the npm-installed browser clients, ``s3`` runs moto's server in
process, ``console`` writes the terminal's readable lines and ``runner`` wires the three servers
together.
"""
