"""``upload-gateway demo``: an embedded S3, a small upstream app and the gateway, on loopback.

``app`` is the upstream app (also a worked example of integrating with the gateway), ``assets``
finds the npm-installed browser clients, ``s3`` runs moto's server in process and ``runner``
wires the three together.
"""
