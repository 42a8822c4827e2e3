"""Paths and the run's settings: the full run's defaults, or --quick's."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from bench import procs

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
OUT_DIR = BENCH_DIR / "out"
GIB = 1024**3
WRK_THREADS = 1


@dataclass(frozen=True)
class Settings:
    """How long and how much: the full run's defaults, or --quick's."""

    quick: bool
    duration: float
    rounds: int
    warmup: float
    stream_size: int
    completion_users: int  # fresh ones each round: their first upload writes the owner record
    completion_per_user: int
    completion_concurrency: int
    inprocess_seconds: float
    connections: tuple[int, ...] = (64, 512)
    signing_connections: int = 64


def make_settings(args: argparse.Namespace) -> Settings:
    if args.quick:
        return Settings(
            quick=True,
            duration=args.duration or 1.0,
            rounds=args.rounds or 3,
            warmup=1.0,
            stream_size=64 * procs.MIB,
            completion_users=8,
            completion_per_user=4,
            completion_concurrency=8,
            inprocess_seconds=0.1,
        )
    return Settings(
        quick=False,
        duration=args.duration or 4.0,
        rounds=args.rounds or 5,
        warmup=1.0,
        stream_size=GIB,
        completion_users=8,
        completion_per_user=40,
        completion_concurrency=8,
        inprocess_seconds=0.5,
    )
