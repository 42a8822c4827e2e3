"""The load cases (passthrough, signing, workers): what each sends, and the alternating rounds."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import companion, documents, load, procs, report
from bench import gateway_server as gw
from bench.servers import Env, log, passthrough_upstream
from bench.settings import WRK_THREADS, Settings


@dataclass
class LoadCase:
    """One load case: what to send, to which server, whose memory to watch."""

    result: report.CaseResult
    server: procs.Server
    make_request: Callable[[], load.Request]
    expect: Callable[[int, bytes], bool] = field(default=lambda status, body: status == 200)


TARGET_NAMES = {
    "direct": "direct",
    "gateway": "gateway",
    "gateway-w2": "gateway --workers 2",
    "bare-aiohttp": "bare aiohttp",
    "nginx-proxy": "nginx",
    "companion": "companion",
}


def _case(group: str, variant: str, target: str, connections: int) -> report.CaseResult:
    label = TARGET_NAMES.get(target, target)
    return report.CaseResult(
        name=f"{group} {variant} c{connections}: {label}",
        group=group,
        variant=variant,
        target=label,
        connections=connections,
    )


def _fixed(request: load.Request) -> Callable[[], load.Request]:
    return lambda: request


def _signed(status: int, body: bytes) -> bool:
    return status == 200 and b'"signature"' in body


def build_cases(env: Env, settings: Settings, login: gw.Login) -> list[LoadCase]:
    """Passthrough (each size and connection count: direct, gateway, bare aiohttp, nginx,
    gateway --workers 2), then signing (policy v4, REST v4, Uppy params, Companion)."""
    cases: list[LoadCase] = []
    direct = passthrough_upstream(env)
    cookie = ("Cookie", login.cookie_header)
    for variant, path in (("1 KiB", "/1k"), ("64 KiB", "/64k")):
        for connections in settings.connections:
            for target in ("direct", "gateway", "bare-aiohttp", "nginx-proxy", "gateway-w2"):
                server = direct if target == "direct" else env.servers.get(target)
                if server is None:
                    continue
                request = load.Request(server.url + path, headers=(cookie,))
                cases.append(
                    LoadCase(
                        _case("passthrough", variant, target, connections),
                        server,
                        _fixed(request),
                    )
                )
    gateway = env.servers["gateway"]
    bucket_host = f"{gw.UPLOADS_BUCKET}.s3.localhost:{procs.host_port(env.servers['moto'].url)[1]}"
    headers = (
        ("Content-Type", "application/json; charset=utf-8"),
        ("Origin", gateway.url),
        cookie,
    )
    signature_url = f"{gateway.url}{gw.FINEUPLOADER_PATH}/signature?v4=true"
    n = settings.signing_connections

    def policy_requests(server: procs.Server, who: gw.Login) -> Callable[[], load.Request]:
        """Fresh v4 policies (their dates move) for ``server``, as its logged-in ``who``."""
        url = f"{server.url}{gw.FINEUPLOADER_PATH}/signature?v4=true"
        sent = (headers[0], ("Origin", server.url), ("Cookie", who.cookie_header))

        def make() -> load.Request:
            document = documents.policy_v4(
                key_prefix=who.key_prefix,
                bucket=gw.UPLOADS_BUCKET,
                access_key_id=gw.ACCESS_KEY_ID,
                region=gw.REGION,
                now=documents.utc_now(),
            )
            return load.Request(url, "POST", sent, documents.as_body(document))

        return make

    def rest_request() -> load.Request:
        raw = documents.rest_v4_part(
            key_prefix=login.key_prefix,
            bucket_host=bucket_host,
            region=gw.REGION,
            now=documents.utc_now(),
        )
        return load.Request(signature_url, "POST", headers, documents.as_body({"headers": raw}))

    uppy = load.Request(
        f"{gateway.url}{gw.UPPY_PATH}/s3/params?filename=photo.jpg&type=image%2Fjpeg",
        headers=(cookie,),
    )
    w2 = env.servers.get("gateway-w2")
    if w2 is not None:
        # The same signing on both cores: that server's own session (its keys differ).
        w2_policies = policy_requests(w2, gw.login(w2.url))
        cases.append(
            LoadCase(_case("signing", "policy v4", "gateway-w2", n), w2, w2_policies, _signed)
        )
    cases += [
        LoadCase(
            _case("signing", "policy v4", "gateway", n),
            gateway,
            policy_requests(gateway, login),
            _signed,
        ),
        LoadCase(_case("signing", "REST v4", "gateway", n), gateway, rest_request, _signed),
        LoadCase(_case("signing", "Uppy params", "gateway", n), gateway, _fixed(uppy)),
    ]
    comp = env.servers.get("companion")
    if comp is not None:
        # @uppy/aws-s3 sends cookies only to its own origin (companionCookiesRule "same-origin"),
        # so a Companion on its own host gets none: it then opens a session per request.
        cookieless = load.Request(comp.url + companion.PARAMS_PATH)
        cookied = load.Request(
            comp.url + companion.PARAMS_PATH,
            headers=(("Cookie", companion.session_cookie(comp.url)),),
        )
        cases += [
            LoadCase(_case("signing", "Uppy params", "companion", n), comp, _fixed(cookieless)),
            LoadCase(
                _case("signing", "Uppy params + cookie", "companion", n), comp, _fixed(cookied)
            ),
        ]
    return cases


def send_once(request: load.Request) -> tuple[int, bytes]:
    """One request with http.client: the preflight that a case answers what it should."""
    host, port = procs.host_port(request.url)
    target = "/" + request.url.split("://", 1)[1].split("/", 1)[1]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(request.method, target, body=request.body, headers=dict(request.headers))
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def run_load(env: Env, settings: Settings, cases: list[LoadCase]) -> None:
    """Preflight and warm each case, then ``rounds`` round-robin passes over all of them."""
    for case in cases:
        status, body = send_once(case.make_request())
        if not case.expect(status, body):
            raise RuntimeError(f"{case.result.name}: preflight answered {status}: {body[:300]!r}")
        load.run(
            case.make_request(),
            connections=case.result.connections,
            duration=settings.warmup,
            threads=WRK_THREADS,
            workdir=env.workdir,
            tag="warmup",
        )
    for round_no in range(1, settings.rounds + 1):
        for case in cases:
            with procs.measure_peak(case.server) as peak:
                result = load.run(
                    case.make_request(),
                    connections=case.result.connections,
                    duration=settings.duration,
                    threads=WRK_THREADS,
                    workdir=env.workdir,
                    tag="run",
                )
            case.result.runs.append(
                report.Run(
                    rps=result.rps,
                    p50_ms=result.p50_ms,
                    p99_ms=result.p99_ms,
                    peak_rss_mib=peak[0] / procs.MIB,
                    errors=result.errors,
                )
            )
            errors = f", errors {result.errors}" if result.errors else ""
            log(
                f"round {round_no} {case.result.name}: {result.rps:,.0f} req/s, "
                f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms{errors}"
            )
