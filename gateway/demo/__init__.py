"""``upload-gateway demo``: an embedded S3, a small upstream app and the gateway, on loopback.

``app`` is the upstream app's integration with the gateway (login header, signed completions,
presigned downloads) and a worked example of it; ``views`` and ``pages`` are its HTML, ``library``
its in-memory records, ``assets`` finds the npm-installed browser clients, ``s3`` runs moto's
server in process and ``runner`` wires the three servers together.
"""
