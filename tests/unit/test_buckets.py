"""gateway.buckets' pure parts: the CORS rule it wants and the least-privilege IAM policy.

Setup and doctor against moto and radosgw: tests/integration/test_buckets.py."""

from __future__ import annotations

from gateway.buckets import (
    BucketNames,
    desired_cors,
    iam_policy,
)


def test_desired_cors_names_the_origins_the_verbs_and_etag() -> None:
    """One rule: each origin once without a slash, POST/PUT/DELETE only, ETag exposed."""
    [rule] = desired_cors(["https://b.example/", "https://a.example", "https://b.example"])
    assert rule["AllowedOrigins"] == ["https://a.example", "https://b.example"]
    assert sorted(rule["AllowedMethods"]) == ["DELETE", "POST", "PUT"]
    assert rule["ExposeHeaders"] == ["ETag"]
    # "*" never covers Authorization (Fetch standard), which chunked uploads send.
    assert {"*", "Authorization"} <= set(rule.get("AllowedHeaders", []))
    assert desired_cors([]) == []


def test_iam_policy_lists_exactly_these_actions() -> None:
    """The policy grants these actions on these resources, and nothing else."""
    policy = iam_policy(BucketNames(uploads="ex-uploads", storage="ex-storage"))
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "UploadsBucketObjects",
                "Effect": "Allow",
                "Action": [
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:PutObject",
                    "s3:PutObjectAcl",
                ],
                "Resource": "arn:aws:s3:::ex-uploads/*",
            },
            {
                "Sid": "StorageBucketObjects",
                "Effect": "Allow",
                "Action": [
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                    "s3:GetObject",
                    "s3:PutObject",
                ],
                "Resource": "arn:aws:s3:::ex-storage/*",
            },
            {
                "Sid": "Buckets",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": ["arn:aws:s3:::ex-uploads", "arn:aws:s3:::ex-storage"],
            },
        ],
    }
