"""The Serve app without Serve: the pure security decisions, image checks, settings and
views, the FastAPI app in-process (create_api over a real store, the real planner and a
renderer that records what it was asked to start), and the render worker on the inline
runner (cancel through the store, as from another replica). No Ray anywhere here."""

import base64
import io
import json
import time
from pathlib import Path

import httpx
import pytest
from provider_doubles import RecordingRenderer
from fastapi.testclient import TestClient
from media_helpers import solid_frames, write_clip
from PIL import Image

from longvid.manifest import RunStatus
from longvid.runtime import InlineSegmentRunner, LocalRunStore
from longvid.runtime.store import read_manifest
from serve.api import create_api
from serve.errors import ApiError
from serve.images import ImageFetcher, InputImages, check_image_bytes, decode_base64_image
from serve.planning import PlanService
from serve.runs import CANCEL, WORKER, RenderStore, worker_record
from serve.security import (
    RateLimiter,
    UrlRejected,
    derive_link_secret,
    is_loopback_host_header,
    is_public_address,
    is_valid_render_id,
    link_signature,
    matching_token,
    parse_image_url,
    parse_tokens,
    public_addresses,
    signed_path,
    token_fingerprint,
    verify_link,
)
from serve.settings import ApiSettings, SettingsError
from serve.views import INTERRUPTED, effective_status, progress, scrub
from serve.worker import STOPPED_BY_SHUTDOWN, RenderWorker

TOKEN, OTHER = "unit-token-0123456789abcdef", "unit-token-other-9876543210"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL = {"prompt": "a red fox in the snow", "duration_s": 5, "resolution": "360p", "judge": "off"}


def image_bytes(fmt: str, size=(32, 24), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 40, 10) if mode == "RGB" else 1).save(out, format=fmt)
    return out.getvalue()


# -- ids, tokens, signed links -------------------------------------------------------------------

@pytest.mark.parametrize("text, ok", [
    ("20250101-120000-abc", True), ("k-0123", True), ("a.b_c-d", True), ("x" * 80, True),
    (".", False), ("..", False), ("", False), ("a/b", False), ("..%2F", False), ("x" * 81, False),
    ("a b", False), ("é", False), ("a\\b", False), ("a\x00", False),
])
def test_render_ids_cannot_name_anything_outside_the_store(text, ok):
    assert is_valid_render_id(text) is ok


def test_tokens_match_in_constant_time_and_are_stored_only_as_fingerprints():
    tokens = parse_tokens(f" {TOKEN}, ,{OTHER},{TOKEN}")
    assert tokens == (TOKEN, OTHER)
    assert matching_token(OTHER, tokens) == OTHER
    assert matching_token(OTHER[:-1], tokens) is None and matching_token("", tokens) is None
    fingerprint = token_fingerprint(TOKEN)
    assert fingerprint == token_fingerprint(TOKEN) != token_fingerprint(OTHER)
    assert TOKEN not in fingerprint and TOKEN[:8] not in fingerprint


def test_signed_links_are_bound_to_path_and_expiry():
    secret, now = b"s" * 32, 1_000_000.0
    link = signed_path(secret, "/v1/renders/r1/video", now, 3600)
    query = dict(part.split("=") for part in link.split("?", 1)[1].split("&"))
    exp, sig = query["exp"], query["sig"]
    assert int(exp) >= now + 3600
    assert verify_link(secret, "/v1/renders/r1/video", exp, sig, now, 3600)
    assert not verify_link(secret, "/v1/renders/r1/report", exp, sig, now, 3600)  # another path
    assert not verify_link(secret, "/v1/renders/r2/video", exp, sig, now, 3600)  # another render
    assert not verify_link(b"t" * 32, "/v1/renders/r1/video", exp, sig, now, 3600)  # another secret
    assert not verify_link(secret, "/v1/renders/r1/video", exp, sig, int(exp) + 1, 3600)  # expired
    far = str(int(now) + 10 * 86400)
    assert not verify_link(secret, "/v1/renders/r1/video", far, link_signature(secret, "/v1/renders/r1/video", int(far)), now, 3600)
    for bad_exp, bad_sig in ((None, sig), (exp, None), ("-1", sig), ("1e9", sig), (exp, sig[:-1]), (exp, "z" * 64)):
        assert not verify_link(secret, "/v1/renders/r1/video", bad_exp, bad_sig, now, 3600)


def test_replicas_derive_the_same_link_secret_from_the_same_tokens():
    assert derive_link_secret([TOKEN, OTHER]) == derive_link_secret([OTHER, TOKEN]) != derive_link_secret([TOKEN])
    a = ApiSettings.from_env({"LONGVID_API_TOKENS": f"{TOKEN},{OTHER}"})
    b = ApiSettings.from_env({"LONGVID_API_TOKENS": f"{OTHER},{TOKEN}"})
    assert a.link_secret.get_secret_value() == b.link_secret.get_secret_value()
    explicit = ApiSettings.from_env({"LONGVID_API_TOKENS": TOKEN, "LONGVID_LINK_SECRET": "shared-secret"})
    assert explicit.link_secret.get_secret_value() == b"shared-secret"


# -- rate limits ----------------------------------------------------------------------------------

def test_rate_limiter_allows_a_burst_then_refills_with_the_clock():
    now = [0.0]
    limiter = RateLimiter(30, clock=lambda: now[0])
    assert all(limiter.check("a") is None for _ in range(30))
    wait = limiter.check("a")
    assert wait == pytest.approx(2.0)  # 30/min: one request every 2 s
    assert limiter.check("b") is None  # per key
    now[0] += 1.0
    assert limiter.check("a") == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.check("a") is None and limiter.check("a") is not None
    now[0] += 3600
    assert sum(limiter.check("a") is None for _ in range(40)) == 30  # the burst never exceeds the limit
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_rate_limiter_forgets_idle_keys_but_not_limited_ones():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0], max_keys=3)
    assert all(limiter.check(key) is None for key in ["busy"] * 60 + ["a", "b"])
    now[0] = 30.0
    assert all(limiter.check("busy") is None for _ in range(30))  # drained again
    limiter.check("c")  # the table is full, but nothing is idle yet
    now[0] = 61.0
    limiter.check("d")  # "a" and "b" have refilled: forgotten; "busy" has not
    assert set(limiter._buckets) == {"busy", "c", "d"}
    assert sum(limiter.check("busy") is None for _ in range(40)) == 31  # its debt was kept


# -- addresses and URLs ---------------------------------------------------------------------------

@pytest.mark.parametrize("address, public", [
    ("93.184.215.14", True), ("2606:4700:4700::1111", True),
    ("127.0.0.1", False), ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("240.0.0.1", False), ("192.0.2.1", False), ("::1", False), ("fe80::1", False), ("fc00::1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False), ("2002:7f00:1::1", False),
    ("64:ff9b::a00:1", False), ("not-an-ip", False),
    # ranges `ipaddress` may call global: IPv6 site-local, IETF protocol assignments (.9 and .10
    # are global there), the retired 6to4 relay anycast, the IPv6 documentation prefix
    ("fec0::1", False), ("192.0.0.8", False), ("192.0.0.9", False), ("192.88.99.1", False), ("3fff::1", False),
])
def test_only_public_unicast_addresses_are_fetched(address, public):
    assert is_public_address(address) is public


@pytest.mark.parametrize("url, why", [
    ("http://example.com/a.png", "only https"),
    ("ftp://example.com/a.png", "only https"),
    ("https:///a.png", "no host"),
    ("https://user:pw@example.com/a.png", "credentials"),
    ("https://example.com:99999/a.png", "malformed"),
    ("https://example.com:8443/a.png", "port 443 only"),
    ("https://8.8.8.8:22/a.png", "port 443 only"),
    ("https://\u2603.example/a.png", "not a valid internationalised domain name"),  # a snowman: not IDNA 2008
])
def test_image_urls_must_be_plain_https(url, why):
    with pytest.raises(UrlRejected, match=why):
        parse_image_url(url)


def test_non_ascii_hosts_are_sent_in_their_idna_form():
    assert parse_image_url("https://b\u00fccher.example/a.png").host == "xn--bcher-kva.example"
    assert parse_image_url("https://B\u00dcCHER.Example./a.png").host == "xn--bcher-kva.example"
    assert parse_image_url("https://\u2460\u2461\u2466.0.0.1/a.png").host == "127.0.0.1"  # then refused as loopback
    png = image_bytes("PNG")
    server = ImageServer({("xn--bcher-kva.example", "/a.png"): lambda: httpx.Response(200, content=png)})
    fetcher = ImageFetcher(1 << 20, resolver=lambda h, p: {"xn--bcher-kva.example": ["93.184.215.14"]}[h],
                           transport=httpx.MockTransport(server))
    assert fetcher.fetch("https://b\u00fccher.example/a.png").data == png
    assert server.requests[-1].extensions["sni_hostname"] == "xn--bcher-kva.example"


def test_hosts_are_checked_through_the_resolver_and_every_address_must_be_public():
    names = {"cdn.example": ["93.184.215.14"], "internal.example": ["10.1.2.3"],
             "mixed.example": ["93.184.215.14", "127.0.0.1"], "meta.example": ["169.254.169.254"]}

    def resolver(host, port):
        if host not in names:
            raise OSError("no such host")
        return names[host]

    assert public_addresses("cdn.example", 443, resolver) == ["93.184.215.14"]
    for host in ("internal.example", "mixed.example", "meta.example"):
        with pytest.raises(UrlRejected, match="private, loopback"):
            public_addresses(host, 443, resolver)
    with pytest.raises(UrlRejected, match="does not resolve"):
        public_addresses("nowhere.example", 443, resolver)
    with pytest.raises(UrlRejected, match="private, loopback"):  # literals are checked without resolving
        public_addresses("[::1]", 443, resolver)
    with pytest.raises(UrlRejected, match="private, loopback"):  # the system resolver: localhost is loopback
        public_addresses("localhost", 443)


# -- images ---------------------------------------------------------------------------------------

def test_images_are_accepted_by_decoding_not_by_name():
    for fmt in ("PNG", "JPEG", "WEBP"):
        checked = check_image_bytes(image_bytes(fmt), 5 * 1024 * 1024)
        assert (checked.format, checked.width, checked.height) == (fmt, 32, 24)
        assert checked.filename.endswith((".png", ".jpg", ".webp"))
    refusals = {
        image_bytes("GIF"): (415, "unsupported_image"),
        image_bytes("PNG")[:60]: (415, "unsupported_image"),  # truncated: fails when decoded
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 100: (415, "unsupported_image"),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>": (415, "unsupported_image"),
        image_bytes("PNG", size=(9000, 9000), mode="1"): (413, "image_too_large"),  # tiny file, 81 megapixels
    }
    for data, (status, code) in refusals.items():
        with pytest.raises(ApiError) as caught:
            check_image_bytes(data, 5 * 1024 * 1024)
        assert (caught.value.status, caught.value.code) == (status, code)
    with pytest.raises(ApiError, match="larger than 1 MB"):
        check_image_bytes(image_bytes("PNG") + b"\x00" * (1024 * 1024), 1024 * 1024)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width`x`height` and holds no pixels: what a decompression bomb
    looks like to Image.open."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_pictures_over_16_megapixels_or_pillows_bomb_limit_are_too_large():
    from PIL import Image

    assert Image.MAX_IMAGE_PIXELS and 20000 * 20000 > 2 * Image.MAX_IMAGE_PIXELS > 10000 * 10000 > Image.MAX_IMAGE_PIXELS
    cases = {
        "5000x4000 (20 MP, ours)": image_bytes("PNG", size=(5000, 4000), mode="1"),
        "10000x10000 (Pillow's warning)": png_header_only(10000, 10000),
        "20000x20000 (Pillow's error)": png_header_only(20000, 20000),
    }
    for label, data in cases.items():
        with pytest.raises(ApiError) as caught:
            check_image_bytes(data, 5 * 1024 * 1024)
        assert (caught.value.status, caught.value.code) == (413, "image_too_large"), label
    assert check_image_bytes(image_bytes("PNG", size=(4000, 4000), mode="1"), 5 * 1024 * 1024).width == 4000
    with pytest.raises(ApiError) as caught:  # decodable by Pillow, but not one of the three formats it is allowed to try
        check_image_bytes(image_bytes("BMP"), 5 * 1024 * 1024)
    assert caught.value.code == "unsupported_image"


def test_base64_images_and_their_limits():
    png = image_bytes("PNG")
    assert decode_base64_image(base64.b64encode(png).decode(), 1 << 20).data == png
    assert decode_base64_image("data:image/png;base64," + base64.b64encode(png).decode(), 1 << 20).data == png
    with pytest.raises(ApiError) as caught:
        decode_base64_image("not base64 at all!", 1 << 20)
    assert caught.value.code == "invalid_base64"
    with pytest.raises(ApiError) as caught:
        decode_base64_image("A" * (2 << 20), 1 << 20)  # refused before decoding
    assert caught.value.code == "image_too_large"


class ImageServer:
    """An https image host as httpx sees it: answers by Host header, after the fetcher chose
    the address. Records what each request went to."""

    def __init__(self, routes):
        self.routes, self.requests = routes, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.headers["host"], request.url.path))
        return handler() if handler else httpx.Response(404)


def test_fetcher_connects_to_the_checked_address_and_rechecks_redirects():
    png = image_bytes("PNG")
    names = {"cdn.example": ["93.184.215.14"], "internal.example": ["10.9.8.7"]}
    server = ImageServer({
        ("cdn.example", "/fox.png"): lambda: httpx.Response(200, content=png),
        ("cdn.example", "/moved"): lambda: httpx.Response(302, headers={"location": "/fox.png"}),
        ("cdn.example", "/to-internal"): lambda: httpx.Response(302, headers={"location": "https://internal.example/x.png"}),
        ("cdn.example", "/huge"): lambda: httpx.Response(200, content=b"\x00" * 3000),
        ("cdn.example", "/text"): lambda: httpx.Response(200, content=b"hello"),
    })
    fetcher = ImageFetcher(1 << 20, resolver=lambda h, p: names[h], transport=httpx.MockTransport(server))
    assert fetcher.fetch("https://cdn.example/fox.png").data == png
    sent = server.requests[-1]
    assert sent.url.host == "93.184.215.14" and sent.headers["host"] == "cdn.example"
    assert sent.extensions["sni_hostname"] == "cdn.example"  # TLS still checks the certificate for the name
    assert fetcher.fetch("https://cdn.example/moved").data == png
    with pytest.raises(ApiError) as caught:
        fetcher.fetch("https://cdn.example/to-internal")
    assert caught.value.code == "url_not_allowed"
    assert all(r.url.host != "10.9.8.7" for r in server.requests)  # never connected to the internal host
    small = ImageFetcher(2048, resolver=lambda h, p: names[h], transport=httpx.MockTransport(server))
    for path, code in (("/huge", "image_too_large"), ("/text", "unsupported_image"), ("/missing", "image_unreachable")):
        with pytest.raises(ApiError) as caught:
            small.fetch(f"https://cdn.example{path}")
        assert caught.value.code == code


class Drip(httpx.SyncByteStream):
    """A server that sends one byte every `every_s` seconds (slowloris)."""

    def __init__(self, every_s: float, count: int = 1000):
        self.every_s, self.count = every_s, count

    def __iter__(self):
        for _ in range(self.count):
            time.sleep(self.every_s)
            yield b"x"


def test_downloads_have_an_overall_deadline_and_are_never_decompressed():
    names = {"cdn.example": ["93.184.215.14"]}
    hops = []

    def slow_redirects(request):
        hops.append(request.url.path)
        time.sleep(0.15)
        return httpx.Response(302, headers={"location": f"/hop{len(hops)}"})

    server = ImageServer({("cdn.example", "/drip"): lambda: httpx.Response(200, stream=Drip(0.05))})
    fetcher = ImageFetcher(1 << 20, resolver=lambda h, p: names[h], transport=httpx.MockTransport(server),
                           timeout_s=5.0, deadline_s=0.4)
    started = time.monotonic()
    with pytest.raises(ApiError, match="took longer than 0.4 s") as caught:
        fetcher.fetch("https://cdn.example/drip")  # every read is quick; the whole is not
    assert caught.value.code == "image_unreachable" and time.monotonic() - started < 2.0
    redirecting = ImageFetcher(1 << 20, resolver=lambda h, p: names[h], transport=httpx.MockTransport(slow_redirects),
                               timeout_s=5.0, max_redirects=10, deadline_s=0.4)
    with pytest.raises(ApiError, match="took longer than 0.4 s"):
        redirecting.fetch("https://cdn.example/start")
    assert 2 <= len(hops) <= 4  # stopped by the deadline, not by the redirect count

    import gzip

    png = image_bytes("PNG")
    server = ImageServer({("cdn.example", "/gz"): lambda: httpx.Response(
        200, content=gzip.compress(png), headers={"content-encoding": "gzip"})})
    fetcher = ImageFetcher(1 << 20, resolver=lambda h, p: names[h], transport=httpx.MockTransport(server))
    with pytest.raises(ApiError, match="sent compressed") as caught:
        fetcher.fetch("https://cdn.example/gz")
    assert caught.value.code == "image_unreachable"
    assert server.requests[-1].headers["accept-encoding"] == "identity"


def test_input_images_are_stored_once_by_content(tmp_path):
    inputs = InputImages(LocalRunStore(tmp_path / "runs"))
    checked = check_image_bytes(image_bytes("PNG"), 1 << 20)
    first, second = inputs.save(checked), inputs.save(checked)
    assert first == second and first.is_absolute() and first.read_bytes() == checked.data
    assert first.parent == (tmp_path / "runs" / "state" / "inputs").resolve()
    assert LocalRunStore(tmp_path / "runs").list_runs() == []  # never mistaken for a run


# -- settings -------------------------------------------------------------------------------------

def test_settings_refuse_to_serve_without_tokens_unless_local(tmp_path):
    with pytest.raises(SettingsError, match="LONGVID_API_TOKENS"):
        ApiSettings.from_env({}).check_can_start("127.0.0.1")
    with pytest.raises(SettingsError, match="LONGVID_ALLOW_NO_AUTH=1"):  # the app itself refuses too
        create_api(PlanService("offline"), RecordingRenderer(), ApiSettings.from_env({"LONGVID_STORE": str(tmp_path / "runs")}))
    allowed = ApiSettings.from_env({"LONGVID_ALLOW_NO_AUTH": "1"})
    allowed.check_can_start("127.0.0.1")
    for host in ("0.0.0.0", "10.0.0.4", None):
        with pytest.raises(SettingsError, match="127.0.0.1"):
            allowed.check_can_start(host)
    ApiSettings.from_env({"LONGVID_API_TOKENS": TOKEN}).check_can_start("0.0.0.0")
    with pytest.raises(SettingsError, match="LONGVID_RATE_LIMIT_PER_MIN must be a whole number"):
        ApiSettings.from_env({"LONGVID_RATE_LIMIT_PER_MIN": "lots"})
    settings = ApiSettings.from_env({"LONGVID_API_TOKENS": TOKEN, "LONGVID_LINK_SECRET": "very-secret-link-key"})
    assert TOKEN not in repr(settings) and "very-secret-link-key" not in repr(settings)
    assert Path(settings.store).is_absolute()


# -- views ----------------------------------------------------------------------------------------

def test_status_shown_to_clients():
    assert effective_status("planned", 100.0, 110.0, 60) == ("queued", False)
    assert effective_status("rendering", 100.0, 150.0, 60) == ("rendering", False)
    assert effective_status("rendering", 100.0, 161.0, 60) == ("failed", True)  # its replica stopped beating
    assert effective_status("merging", None, 1e9, 60) == ("merging", False)  # a CLI run: no heartbeat to judge
    assert effective_status("done", 100.0, 1e9, 60) == ("done", False)
    from longvid.manifest import RunManifest, SegmentRecord
    from longvid.spec import RenderSpec, SegmentState

    manifest = RunManifest(run_id="r", spec=RenderSpec(prompt="fox", duration_s=5), segments=[
        SegmentRecord(index=i, scene_index=0, provider="preview", state=SegmentState.ACCEPTED if i < 3 else SegmentState.PENDING)
        for i in range(4)])
    assert progress(manifest, "rendering") == {"done": 3, "total": 4, "percent": 75.0}
    all_accepted = manifest.model_copy(update={"segments": [s.model_copy(update={"state": SegmentState.ACCEPTED}) for s in manifest.segments]})
    assert progress(all_accepted, "merging")["percent"] == 99.0  # 100 % means the video is there
    assert progress(all_accepted, "done") == {"done": 4, "total": 4, "percent": 100.0}
    assert scrub("No such file: /srv/runs/x/seg.mp4", ["/srv/runs"]) == "No such file: <store>/x/seg.mp4"


def test_every_run_status_maps_to_a_documented_api_status():
    from typing import get_args

    from serve.models import RenderStatusName
    from serve.views import ApiStatus

    assert {status.value for status in ApiStatus} == set(get_args(RenderStatusName))
    shown = {status: effective_status(status, None, 0.0, 60)[0] for status in RunStatus}
    assert shown[RunStatus.PLANNED] is ApiStatus.QUEUED and set(shown.values()) == set(ApiStatus)
    assert json.dumps({"status": shown[RunStatus.DONE]}) == '{"status": "done"}'  # answered as the plain string


# -- the app, in-process --------------------------------------------------------------------------


def make_client(tmp_path, **overrides):
    env = {"LONGVID_API_TOKENS": f"{TOKEN},{OTHER}", "LONGVID_STORE": str(tmp_path / "runs"), "LONGVID_PLANNER": "offline"}
    settings = ApiSettings.from_env(env, **overrides)
    renderer = RecordingRenderer()
    client = TestClient(create_api(PlanService("offline"), renderer, settings), base_url="http://127.0.0.1")
    return client, renderer, RenderStore(LocalRunStore(settings.store))


def mark(store: RenderStore, run_id: str, status: str, heartbeat_at: float | None = None):
    from longvid.runtime.store import MANIFEST, write_model

    run = store.store.open(run_id)
    write_model(run, MANIFEST, read_manifest(run).model_copy(update={"status": RunStatus(status)}))
    if heartbeat_at is not None:
        attempt = json.loads(run.read_bytes(WORKER))["attempt"]
        run.write_bytes(WORKER, worker_record(attempt, now=heartbeat_at))


def test_errors_have_one_shape_and_no_internals(tmp_path):
    client, _, _ = make_client(tmp_path)
    cases = [
        (client.get("/v1/renders"), 401, "unauthorized"),
        (client.get("/v1/renders", headers={"Authorization": "Bearer nope"}), 401, "unauthorized"),
        (client.get("/v1/renders", headers={"Authorization": f"Basic {TOKEN}"}), 401, "unauthorized"),
        (client.get("/v1/nothing", headers=AUTH), 404, "not_found"),
        (client.put("/v1/plans", headers=AUTH), 405, "method_not_allowed"),
        (client.post("/v1/plans", content="prompt=fox", headers={**AUTH, "content-type": "text/plain"}), 415, "unsupported_media_type"),
        (client.post("/v1/plans", content="{", headers={**AUTH, "content-type": "application/json"}), 400, "invalid_json"),
        (client.post("/v1/plans", json={**SMALL, "colour": "red"}, headers=AUTH), 422, "invalid_request"),
        (client.post("/v1/plans", json={**SMALL, "provider": "sora"}, headers=AUTH), 422, "invalid_request"),
        (client.get("/v1/renders/nope", headers=AUTH), 404, "not_found"),
    ]
    for response, status, code in cases:
        body = response.json()
        assert (response.status_code, body["error"]["code"]) == (status, code), body
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"} and body["error"]["message"]
        assert str(tmp_path) not in response.text and "Traceback" not in response.text
    assert "unknown provider" in cases[8][0].json()["error"]["message"]
    assert cases[0][0].headers["www-authenticate"] == "Bearer"


def test_plan_gives_the_exact_segments_and_cost(tmp_path):
    client, renderer, _ = make_client(tmp_path)
    response = client.post("/v1/plans", json={"prompt": "a red fox in the snow", "duration_s": 31}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert len(body["segments"]) == 6 and sum(s["frames"] for s in body["segments"]) == 31 * 24
    assert all("scene" not in s for s in body["segments"])
    assert body["provider"] == "preview" and body["estimated_cost_usd"] == 0.0
    assert [s["description"] for s in body["storyboard"]["scenes"]]
    assert renderer.started == []


def test_submission_is_written_to_the_store_and_the_token_never_is(tmp_path):
    client, renderer, store = make_client(tmp_path)
    png = base64.b64encode(image_bytes("PNG")).decode()
    storyboard = client.post("/v1/plans", json=SMALL, headers=AUTH).json()["storyboard"]
    storyboard["scenes"][0]["description"] = "an edited opening: the fox wakes up"
    response = client.post("/v1/renders", json={**SMALL, "storyboard": storyboard, "reference_images": [{"data_base64": png}]}, headers=AUTH)
    assert response.status_code == 202, response.text
    accepted = response.json()
    run_id = accepted["id"]
    assert accepted["status"] == "queued" and renderer.started[0][0] == run_id
    run_dir = tmp_path / "runs" / run_id
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["storyboard"]["scenes"][0]["description"] == "an edited opening: the fox wakes up"
    assert json.loads((run_dir / "worker.json").read_text())["attempt"] == renderer.started[0][1]
    status = client.get(accepted["links"]["self"], headers=AUTH).json()
    assert status["status"] == "queued" and status["progress"] == {"done": 0, "total": len(plan["segments"]), "percent": 0.0}
    assert status["spec"]["reference_images"] == [f"{check_image_bytes(image_bytes('PNG'), 1 << 20).sha256}.png"]
    everything = b"".join(p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert TOKEN.encode() not in everything and str(tmp_path).encode() not in json.dumps(status).encode()
    assert read_manifest(store.store.open(run_id)).spec.reference_images[0].is_file()


def test_idempotency_key_gives_the_same_render_per_token(tmp_path):
    client, renderer, _ = make_client(tmp_path)
    first = client.post("/v1/renders", json=SMALL, headers={**AUTH, "Idempotency-Key": "job-1"})
    again = client.post("/v1/renders", json=SMALL, headers={**AUTH, "Idempotency-Key": "job-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["status"] == "queued"
    changed = client.post("/v1/renders", json={**SMALL, "seed": 7}, headers={**AUTH, "Idempotency-Key": "job-1"})
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "idempotency_conflict"
    other = client.post("/v1/renders", json=SMALL, headers={"Authorization": f"Bearer {OTHER}", "Idempotency-Key": "job-1"})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    bad = client.post("/v1/renders", json=SMALL, headers={**AUTH, "Idempotency-Key": "has space"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_idempotency_key"
    assert len(renderer.started) == 2


def test_concurrent_renders_and_requests_are_limited_per_token(tmp_path):
    client, _, store = make_client(tmp_path, max_concurrent_renders=2, write_rate_per_minute=6)
    ids = [client.post("/v1/renders", json={**SMALL, "seed": i}, headers=AUTH).json()["id"] for i in range(2)]
    refused = client.post("/v1/renders", json=SMALL, headers=AUTH)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_renders"
    assert client.post("/v1/renders", json=SMALL, headers={"Authorization": f"Bearer {OTHER}"}).status_code == 202
    mark(store, ids[0], "done")
    assert client.post("/v1/renders", json=SMALL, headers=AUTH).status_code == 202
    for _ in range(2):
        client.post("/v1/plans", json=SMALL, headers=AUTH)  # 6 writes by now
    limited = client.post("/v1/plans", json=SMALL, headers=AUTH)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert client.get("/v1/renders", headers=AUTH).status_code == 200  # reads have their own budget


def test_interrupted_render_is_reported_and_resumed_with_a_new_attempt(tmp_path):
    client, renderer, store = make_client(tmp_path)
    run_id = client.post("/v1/renders", json=SMALL, headers=AUTH).json()["id"]
    assert client.post(f"/v1/renders/{run_id}/resume", headers=AUTH).json()["error"]["code"] == "already_running"
    mark(store, run_id, "rendering", heartbeat_at=time.time() - 3600)  # its replica died an hour ago
    status = client.get(f"/v1/renders/{run_id}", headers=AUTH).json()
    assert status["status"] == "failed" and status["error"] == INTERRUPTED
    assert client.delete(f"/v1/renders/{run_id}", headers=AUTH).json()["error"]["code"] == "already_finished"
    resumed = client.post(f"/v1/renders/{run_id}/resume", headers=AUTH)
    assert resumed.status_code == 202 and resumed.json()["status"] == "queued"
    assert [r for r, _ in renderer.started] == [run_id, run_id] and renderer.started[0][1] != renderer.started[1][1]
    assert client.get(f"/v1/renders/{run_id}", headers=AUTH).json()["status"] == "queued"
    mark(store, run_id, "done")
    assert client.post(f"/v1/renders/{run_id}/resume", headers=AUTH).json()["error"]["code"] == "already_done"


def test_cancel_writes_a_marker_for_the_running_attempt(tmp_path):
    client, renderer, _ = make_client(tmp_path)
    run_id = client.post("/v1/renders", json=SMALL, headers=AUTH).json()["id"]
    response = client.delete(f"/v1/renders/{run_id}", headers=AUTH)
    assert response.status_code == 202 and response.json() == {"id": run_id, "status": "cancelling"}
    marker = json.loads((tmp_path / "runs" / run_id / CANCEL).read_text())
    assert marker["attempt"] == renderer.started[0][1]


def test_media_routes_take_a_signed_link_or_a_token(tmp_path):
    client, _, store = make_client(tmp_path)
    accepted = client.post("/v1/renders", json=SMALL, headers=AUTH).json()
    run_id, links = accepted["id"], accepted["links"]
    assert client.get(links["video"]).json()["error"]["code"] == "not_ready"
    assert client.get(links["video"]).status_code == 409
    assert client.get(links["report"]).status_code == 404
    assert client.get(links["contact_sheet"]).status_code == 404
    data = write_clip(tmp_path / "runs" / run_id / "final.mp4", solid_frames((200, 90, 30), 24)).read_bytes()
    (tmp_path / "runs" / run_id / "report.html").write_text("<p>written when the render finished</p>")
    full = client.get(links["video"])
    assert full.status_code == 200 and full.content == data and full.headers["accept-ranges"] == "bytes"
    part = client.get(links["video"], headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    tail = client.get(f"/v1/renders/{run_id}/video", headers={**AUTH, "Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    beyond = client.get(links["video"], headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.json()["error"]["code"] == "range_not_satisfiable"
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"
    assert client.get(links["video"], headers={"Range": "frames=1-2"}).json()["error"]["code"] == "invalid_range"
    report = client.get(links["report"])
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in report.headers["content-security-policy"]
    assert f'src="/v1/renders/{run_id}/video?exp=' in report.text and "a red fox in the snow" in report.text
    # A signature opens only the path it was made for, and only with its own render.
    video_query = links["video"].split("?", 1)[1]
    tampered = video_query[:-1] + ("1" if video_query[-1] == "0" else "0")  # always a different signature
    for path in (f"/v1/renders/{run_id}/report?{video_query}", f"/v1/renders/{run_id}/video?{tampered}",
                 f"/v1/renders/{run_id}/video", f"/v1/renders/{run_id}?{video_query}"):
        assert client.get(path).status_code == 401, path


@pytest.mark.parametrize("host, local", [
    ("127.0.0.1", True), ("127.0.0.1:8000", True), ("localhost", True), ("LOCALHOST:1", True), ("[::1]:8000", True),
    ("[::1]", True), ("rebind.attacker.example", False), ("rebind.attacker.example:8000", False), ("127.0.0.2", False),
    ("localhost.attacker.example", False), ("localhost@evil.example", False), ("localhost:80/x", False),
    ("localhost:port", False), ("::1", False), ("", False), (None, False),
])
def test_a_tokenless_server_answers_only_loopback_host_names(host, local):
    assert is_loopback_host_header(host) is local


def test_no_auth_mode_answers_only_local_clients_by_local_names(tmp_path):
    settings = ApiSettings.from_env({"LONGVID_ALLOW_NO_AUTH": "1", "LONGVID_STORE": str(tmp_path / "runs")})
    app = create_api(PlanService("offline"), RecordingRenderer(), settings)
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        local = TestClient(app, base_url=base, client=("127.0.0.1", 5000))
        assert local.get("/v1/renders").status_code == 200, base
    assert local.post("/v1/renders", json=SMALL).status_code == 202
    remote = TestClient(app, base_url="http://127.0.0.1:8000", client=("203.0.113.9", 5000)).get("/v1/renders")
    assert remote.status_code == 403 and remote.json()["error"]["code"] == "forbidden"
    # DNS rebinding: a page on rebind.attacker.example, its name now resolving to 127.0.0.1, calls the
    # server from the user's own browser: a local client, but the Host is the attacker's name.
    rebound = TestClient(app, base_url="http://rebind.attacker.example:8000", client=("127.0.0.1", 5000))
    for response in (rebound.get("/v1/renders"), rebound.post("/v1/renders", json=SMALL),
                     rebound.post("/v1/plans", content="{", headers={"content-type": "application/json"})):
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
        assert "localhost, 127.0.0.1 or [::1]" in response.json()["error"]["message"]
    assert len(local.get("/v1/renders").json()["renders"]) == 1  # the rebound POST made nothing


def test_renders_belong_to_the_token_that_asked_for_them(tmp_path):
    client, renderer, _ = make_client(tmp_path)
    other = {"Authorization": f"Bearer {OTHER}"}
    accepted = client.post("/v1/renders", json={**SMALL, "prompt": "a secret product launch"}, headers=AUTH).json()
    run_id, links = accepted["id"], accepted["links"]
    run_dir = tmp_path / "runs" / run_id
    write_clip(run_dir / "final.mp4", solid_frames((200, 90, 30), 24))
    (run_dir / "report.html").write_text("<p>written when the render finished</p>")
    (run_dir / "contact_sheet.png").write_bytes(image_bytes("PNG"))
    assert client.get("/v1/renders", headers=other).json() == {"renders": []}
    for method, path in (("GET", ""), ("GET", "/events"), ("GET", "/video"), ("GET", "/report"),
                         ("GET", "/contact-sheet"), ("POST", "/resume"), ("DELETE", "")):
        response = client.request(method, f"/v1/renders/{run_id}{path}", headers=other)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", (method, path)
        assert "secret product" not in response.text
    assert not (run_dir / CANCEL).exists() and len(renderer.started) == 1  # nothing was cancelled or resumed
    # Its owner sees it, and its signed links open it for anyone holding them (a <video> sends no token).
    assert [r["id"] for r in client.get("/v1/renders", headers=AUTH).json()["renders"]] == [run_id]
    assert client.get(f"/v1/renders/{run_id}", headers=AUTH).status_code == 200
    for kind in ("video", "report", "contact_sheet"):
        assert client.get(links[kind]).status_code == 200, kind
    # A run without request.json (made by the CLI or a batch job) belongs to no token.
    cli_run = client.post("/v1/renders", json={**SMALL, "seed": 1}, headers=other).json()["id"]
    (tmp_path / "runs" / cli_run / "request.json").unlink()
    assert client.get("/v1/renders", headers=other).json() == {"renders": []}
    assert client.get(f"/v1/renders/{cli_run}", headers=other).status_code == 404


async def _parallel_posts(apps, count: int, headers: dict) -> list[httpx.Response]:
    import asyncio

    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") for app in apps]
    try:
        return await asyncio.gather(*(clients[i % len(clients)].post("/v1/renders", json={**SMALL, "seed": i}, headers=headers)
                                      for i in range(count)))
    finally:
        for c in clients:
            await c.aclose()


def test_parallel_submissions_cannot_beat_the_render_limit(tmp_path):
    import asyncio

    client, renderer, store = make_client(tmp_path, max_concurrent_renders=2)
    responses = asyncio.run(_parallel_posts([client.app], 6, AUTH))
    assert sorted(r.status_code for r in responses) == [202, 202, 429, 429, 429, 429]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"too_many_renders"}
    assert len(renderer.started) == 2
    # Two replicas over one store, each with its own lock: every render is either started or
    # refused and left cancelled, never left queued without a worker. (That at most the limit
    # are started across replicas is shown exactly by the next test.)
    second, second_renderer, _ = make_client(tmp_path, max_concurrent_renders=4)
    first, first_renderer, _ = make_client(tmp_path, max_concurrent_renders=4)
    responses = asyncio.run(_parallel_posts([first.app, second.app], 8, {"Authorization": f"Bearer {OTHER}"}))
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    assert accepted and all(r.status_code == 202 or r.json()["error"]["code"] == "too_many_renders" for r in responses)
    owned = {r.run_id: r.manifest.status for r in store.records(token_fingerprint(OTHER))}
    assert sorted(run_id for run_id, status in owned.items() if status == "planned") == sorted(accepted)
    assert all(status == "cancelled" for run_id, status in owned.items() if run_id not in accepted)
    assert sorted(run_id for run_id, _ in first_renderer.started + second_renderer.started) == sorted(accepted)


def test_a_render_admitted_past_the_limit_by_another_replica_is_cancelled_and_refused(tmp_path, monkeypatch):
    """Another replica admits a render for the same token between this replica's check and its
    own admission: the recount after admitting sees it, and the later render gives way."""
    client, renderer, _ = make_client(tmp_path, max_concurrent_renders=1)
    rival = {}
    admit = RenderStore.admit

    def admit_after_a_rival(self, run_id, owner, *args):
        if not rival:  # what the other replica does at the same moment, a little earlier
            rival["id"] = run_id + "-rival"
            assert admit(self, rival["id"], owner, *args) is not None
        return admit(self, run_id, owner, *args)

    monkeypatch.setattr(RenderStore, "admit", admit_after_a_rival)
    refused = client.post("/v1/renders", json=SMALL, headers=AUTH)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_renders"
    monkeypatch.undo()
    assert renderer.started == []
    statuses = {r["id"]: r["status"] for r in client.get("/v1/renders", headers=AUTH).json()["renders"]}
    assert statuses.pop(rival["id"]) == "queued"
    (late,) = statuses.items()
    assert late[1] == "cancelled"  # resumable once the rival has finished
    assert "too many unfinished renders" in client.get(f"/v1/renders/{late[0]}", headers=AUTH).json()["error"]


def test_unauthenticated_writes_are_401_whatever_their_body(tmp_path):
    client, _, _ = make_client(tmp_path, max_body_bytes=1000)
    for response in (
        client.post("/v1/plans", content="prompt=fox", headers={"content-type": "text/plain"}),
        client.post("/v1/plans", content="{", headers={"content-type": "application/json"}),
        client.post("/v1/renders", content=b"x" * 5000, headers={"content-type": "application/json"}),  # over the size cap
        client.post("/v1/renders", json=SMALL, headers={"Authorization": "Bearer wrong"}),
        client.delete("/v1/renders/some-id"),
        client.post("/v1/renders/some-id/resume"),
    ):
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized", response.text
        assert response.headers["www-authenticate"] == "Bearer"
    deep = "[" * 100_000 + "]" * 100_000  # more nesting than the JSON parser takes: a parse error, not a 500
    parsed = make_client(tmp_path)[0].post("/v1/plans", content=deep, headers={**AUTH, "content-type": "application/json"})
    assert parsed.status_code == 400 and parsed.json()["error"]["code"] == "invalid_json"


def test_reference_image_errors_through_the_api(tmp_path, monkeypatch):
    """A picture over Pillow's bomb limit is 413 (not 415); a non-ASCII host is fetched by its
    IDNA name (not a 500); downloads beyond the replica's slots are told to retry."""
    import asyncio
    import threading

    import serve.api

    png = image_bytes("PNG")
    release, entered = threading.Event(), []

    def slow_host(request):
        entered.append(request.headers["host"])
        release.wait(10)
        return httpx.Response(200, content=png)

    monkeypatch.setattr(serve.api, "MAX_IMAGE_DOWNLOADS", 2)
    fetcher = ImageFetcher(1 << 20, resolver=lambda h, p: ["93.184.215.14"], transport=httpx.MockTransport(slow_host))
    env = {"LONGVID_API_TOKENS": TOKEN, "LONGVID_STORE": str(tmp_path / "runs")}
    app = create_api(PlanService("offline"), RecordingRenderer(), ApiSettings.from_env(env), fetcher=fetcher)
    client = TestClient(app, base_url="http://127.0.0.1")
    bomb = base64.b64encode(png_header_only(20000, 20000)).decode()
    response = client.post("/v1/plans", json={**SMALL, "reference_images": [{"data_base64": bomb}]}, headers=AUTH)
    assert response.status_code == 413 and response.json()["error"]["code"] == "image_too_large"

    async def downloads():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as ac:
            def plan(url):
                return ac.post("/v1/plans", json={**SMALL, "reference_images": [{"url": url}]}, headers=AUTH)

            holding = [asyncio.create_task(plan("https://b\u00fccher.example/a.png")) for _ in range(2)]
            while len(entered) < 2:
                await asyncio.sleep(0.01)
            third = await plan("https://cdn.example/b.png")  # both slots are taken
            release.set()
            return third, await asyncio.gather(*holding)

    third, held = asyncio.run(downloads())
    assert third.status_code == 503 and third.json()["error"]["code"] == "unavailable" and third.headers["retry-after"]
    assert [r.status_code for r in held] == [200, 200] and entered == ["xn--bcher-kva.example"] * 2


# -- reference images uploaded as multipart/form-data ---------------------------------------------

def picture(colour, fmt="PNG", size=(32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


def upload(*images: bytes, name: str = "images") -> list:
    return [(name, (f"ref{i}.png", data, "image/png")) for i, data in enumerate(images)]


def form(spec: dict) -> dict:
    return {"spec": json.dumps(spec)}


def stored_name(data: bytes) -> str:
    return check_image_bytes(data, 1 << 20).filename


def test_reference_images_can_be_uploaded_as_files(tmp_path):
    client, renderer, store = make_client(tmp_path)
    red, green, blue = picture((200, 0, 0)), picture((0, 200, 0), "JPEG"), picture((0, 0, 200), "WEBP")
    plan = client.post("/v1/plans", data=form(SMALL), files=upload(red, green), headers=AUTH)
    assert plan.status_code == 200, plan.text
    assert plan.json()["segments"] == client.post("/v1/plans", json=SMALL, headers=AUTH).json()["segments"]
    # A render: the spec's own images first, then the uploads in the order sent; all stored by content.
    inline = {**SMALL, "reference_images": [{"data_base64": base64.b64encode(blue).decode()}]}
    accepted = client.post("/v1/renders", data=form(inline), files=upload(red, green), headers=AUTH)
    assert accepted.status_code == 202, accepted.text
    status = client.get(accepted.json()["links"]["self"], headers=AUTH).json()
    assert status["spec"]["reference_images"] == [stored_name(blue), stored_name(red), stored_name(green)]
    spec = read_manifest(store.store.open(accepted.json()["id"])).spec
    assert [p.read_bytes() for p in spec.reference_images] == [blue, red, green]
    assert renderer.started[0][0] == accepted.json()["id"]
    # The spec may come as a file too (curl -F spec=@request.json); an upload-only form is fine.
    as_file = client.post("/v1/plans", files=[("spec", ("r.json", json.dumps(SMALL), "application/json")),
                                              *upload(red)], headers=AUTH)
    assert as_file.status_code == 200, as_file.text
    # A browser form's file input left empty sends a nameless, empty file: not an image.
    browser_form = (f'--b\r\ncontent-disposition: form-data; name="spec"\r\n\r\n{json.dumps({**SMALL, "seed": 1})}\r\n'
                    '--b\r\ncontent-disposition: form-data; name="images"; filename=""\r\n'
                    'content-type: application/octet-stream\r\n\r\n\r\n--b--\r\n')
    unfilled = client.post("/v1/renders", content=browser_form, headers={**AUTH, "content-type": "multipart/form-data; boundary=b"})
    assert unfilled.status_code == 202, unfilled.text
    assert client.get(unfilled.json()["links"]["self"], headers=AUTH).json()["spec"]["reference_images"] == []


def test_uploaded_files_are_checked_like_base64_images(tmp_path):
    client, renderer, _ = make_client(tmp_path)
    red = picture((200, 0, 0))
    two_inline = {**SMALL, "reference_images": [{"data_base64": base64.b64encode(red).decode()}] * 2}
    cases = [  # (form fields, files, status, code)
        (form(SMALL), upload(red, b"just text, whatever the name says"), 415, "unsupported_image"),
        (form(SMALL), upload(image_bytes("GIF")), 415, "unsupported_image"),
        (form(SMALL), upload(png_header_only(20000, 20000)), 413, "image_too_large"),
        (form(SMALL), upload(image_bytes("PNG", size=(5000, 4000), mode="1")), 413, "image_too_large"),  # 20 MP
        (form(SMALL), upload(red + b"\x00" * (5 * 1024 * 1024)), 413, "image_too_large"),
        (form(SMALL), upload(*[red] * 5), 422, "invalid_request"),
        (form(two_inline), upload(red, red, red), 422, "invalid_request"),  # 5 in all
        (form({**SMALL, "colour": "red"}), upload(red), 422, "invalid_request"),
        ({"spec": "{not json"}, upload(red), 400, "invalid_json"),
        ({}, upload(red), 422, "invalid_request"),  # no spec
        ({**form(SMALL), "extra": "x"}, upload(red), 422, "invalid_request"),
        (form(SMALL), upload(red, name="image"), 422, "invalid_request"),
    ]
    for data, files, status, code in cases:
        response = client.post("/v1/plans", data=data, files=files, headers=AUTH)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (response.text, status, code)
    assert "5 reference images in all" in client.post("/v1/plans", data=form(two_inline), files=upload(red, red, red),
                                                      headers=AUTH).json()["error"]["message"]
    multipart = {**AUTH, "content-type": "multipart/form-data; boundary=b"}
    malformed = [
        client.post("/v1/plans", content=b"--b\r\n", headers={**AUTH, "content-type": "multipart/form-data"}),  # no boundary
        client.post("/v1/plans", content=b'--b\r\ncontent-disposition: form-data; name="spec"\r\n\r\n{}', headers=multipart),
        client.post("/v1/plans", content=b"--b\r\nno header end", headers=multipart),
    ]
    for response in malformed:
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_multipart"), response.text
    assert client.post("/v1/renders", content="prompt=fox", headers={**AUTH, "content-type": "text/plain"}).status_code == 415
    assert renderer.started == [] and not (tmp_path / "runs" / "state" / "inputs").exists()


async def _stream_post(app, path: str, chunks, headers: dict) -> httpx.Response:
    async def body():
        for chunk in chunks:
            yield chunk

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        return await client.post(path, content=body(), headers=headers)


def test_an_oversized_upload_is_refused_before_the_rest_is_sent(tmp_path):
    import asyncio

    client, _, _ = make_client(tmp_path, max_image_bytes=100_000, max_body_bytes=150_000)
    app, boundary, sent = client.app, "x0x0x0", []
    head = (f'--{boundary}\r\ncontent-disposition: form-data; name="spec"\r\n\r\n{json.dumps(SMALL)}\r\n'
            f'--{boundary}\r\ncontent-disposition: form-data; name="images"; filename="big.png"\r\n'
            f'content-type: image/png\r\n\r\n').encode()

    def chunks(part_bytes: int, parts: int = 1):
        yield head
        for n in range(parts):
            for _ in range(part_bytes // 10_000):
                sent.append(10_000)
                yield b"\x89" * 10_000
            more = f'\r\n--{boundary}\r\ncontent-disposition: form-data; name="images"; filename="b{n}.png"\r\n\r\n'
            yield more.encode() if n < parts - 1 else f"\r\n--{boundary}--\r\n".encode()

    headers = {**AUTH, "content-type": f"multipart/form-data; boundary={boundary}"}
    one_too_big = asyncio.run(_stream_post(app, "/v1/plans", chunks(1_000_000), headers))
    assert (one_too_big.status_code, one_too_big.json()["error"]["code"]) == (413, "image_too_large")
    assert sum(sent) <= 110_000  # stopped reading at the image cap, not after 1 MB
    sent.clear()
    two_fit_but_not_together = asyncio.run(_stream_post(app, "/v1/renders", chunks(90_000, parts=2), headers))
    assert (two_fit_but_not_together.status_code, two_fit_but_not_together.json()["error"]["code"]) == (413, "payload_too_large")
    assert sum(sent) <= 160_000
    declared = client.post("/v1/plans", content=b"x" * 150_001, headers=headers)  # Content-Length over the cap
    assert (declared.status_code, declared.json()["error"]["code"]) == (413, "payload_too_large")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_uploads_need_a_token_and_count_against_the_rate_limit(tmp_path):
    client, renderer, _ = make_client(tmp_path, write_rate_per_minute=1)
    red = picture((200, 0, 0))
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.post("/v1/renders", data=form(SMALL), files=upload(red), headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/plans", data=form(SMALL), files=upload(red), headers=AUTH).status_code == 200
    limited = client.post("/v1/renders", data=form(SMALL), files=upload(red), headers=AUTH)
    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
    assert renderer.started == []


def test_an_idempotency_key_covers_the_uploaded_files(tmp_path):
    client, renderer, _ = make_client(tmp_path)
    red, green = picture((200, 0, 0)), picture((0, 200, 0))
    key = {**AUTH, "Idempotency-Key": "upload-1"}
    first = client.post("/v1/renders", data=form(SMALL), files=upload(red, green), headers=key)
    again = client.post("/v1/renders", data=form(SMALL), files=upload(red, green), headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    spec_part = ("spec", (None, json.dumps(SMALL), "application/json"))  # a multipart form even without files
    for files in (upload(red, red), upload(green, red), upload(red), []):  # other files, order or count
        changed = client.post("/v1/renders", files=[spec_part, *files], headers=key)
        assert (changed.status_code, changed.json()["error"]["code"]) == (409, "idempotency_conflict")
    as_json = client.post("/v1/renders", json=SMALL, headers=key)
    assert (as_json.status_code, as_json.json()["error"]["code"]) == (409, "idempotency_conflict")
    assert len(renderer.started) == 1


def test_the_report_page_shows_no_server_paths(tmp_path):
    from longvid.runtime.store import MANIFEST, write_model

    client, _, store = make_client(tmp_path)
    accepted = client.post("/v1/renders", json=SMALL, headers=AUTH).json()
    root = str((tmp_path / "runs").resolve())
    run = store.store.open(accepted["id"])
    manifest = read_manifest(run)
    write_model(run, MANIFEST, manifest.model_copy(update={
        "status": RunStatus.FAILED, "error": f"merge failed: {root}/{accepted['id']}/final.mp4",
        "warnings": (f"judge fell back; see {root}/state/judge.log",),
        "segments": [s.model_copy(update={"error": f"ffmpeg: {root}/{accepted['id']}/segments/seg_{s.index:04d}.mp4 not found"})
                     for s in manifest.segments]}))
    (tmp_path / "runs" / accepted["id"] / "report.html").write_text("<p>written when the render finished</p>")
    page = client.get(accepted["links"]["report"])
    assert page.status_code == 200 and "merge failed" in page.text and "judge fell back" in page.text
    assert root not in page.text and str(tmp_path) not in page.text
    assert page.text.count("&lt;store&gt;/") == 2 + len(manifest.segments)


# -- the worker: renders from the store, cancelled through the store ------------------------------

def admit_render(store_root: Path, **spec_fields) -> tuple[str, str]:
    client, renderer, _ = make_client(store_root.parent if store_root.name == "runs" else store_root)
    response = client.post("/v1/renders", json={**SMALL, **spec_fields}, headers=AUTH)
    assert response.status_code == 202, response.text
    return renderer.started[0]


def wait_for(predicate, timeout_s=60.0, every_s=0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return False


def test_cancel_from_another_replica_stops_the_render_and_leaves_it_resumable(tmp_path):
    run_id, attempt = admit_render(tmp_path, duration_s=60, continuity="chain")
    worker = RenderWorker(LocalRunStore(tmp_path / "runs"), InlineSegmentRunner, judge_factory=lambda spec: None, poll_s=0.05)
    other_replica = RenderStore(LocalRunStore(tmp_path / "runs"))  # its own store object, as on another host
    assert worker.start(run_id, attempt) and not worker.start(run_id, attempt)

    def accepted():
        record = other_replica.load(run_id)
        return record is not None and record.manifest.counts().get("accepted", 0) >= 1

    assert wait_for(accepted)
    other_replica.request_cancel(other_replica.load(run_id))
    assert wait_for(lambda: not worker.running())
    manifest = other_replica.load(run_id).manifest
    assert manifest.status == "cancelled"
    assert 1 <= manifest.counts().get("accepted", 0) < len(manifest.segments)  # stopped part-way, work kept
    assert worker.healthy()


def test_shutdown_stops_renders_cleanly_and_failures_are_recorded(tmp_path):
    run_id, attempt = admit_render(tmp_path, duration_s=60, continuity="chain")
    worker = RenderWorker(LocalRunStore(tmp_path / "runs"), InlineSegmentRunner, judge_factory=lambda spec: None, poll_s=0.05)
    records = RenderStore(LocalRunStore(tmp_path / "runs"))
    worker.start(run_id, attempt)
    assert wait_for(lambda: records.load(run_id).manifest.status == "rendering")
    worker.stop_all(timeout_s=60)
    manifest = records.load(run_id).manifest
    assert (manifest.status, manifest.error) == ("cancelled", STOPPED_BY_SHUTDOWN)

    def broken_judge(spec):
        raise RuntimeError("judge actor could not start")

    failing = RenderWorker(LocalRunStore(tmp_path / "runs"), InlineSegmentRunner, judge_factory=broken_judge, poll_s=0.05)
    failing.start(run_id, records.requeue(records.load(run_id)))  # as POST .../resume does
    assert wait_for(lambda: not failing.running())
    manifest = records.load(run_id).manifest
    assert manifest.status == "failed" and "judge actor could not start" in manifest.error


# -- an S3 store ---------------------------------------------------------------------------------

def test_renders_live_in_an_s3_store_too(s3_server, tmp_path):
    """The same API over s3:// (moto's S3 on 127.0.0.1): the folder, its exclusive request
    record, reference images that another node materialises, listing and cancel."""
    import shutil

    from longvid.runtime import open_store

    settings = ApiSettings.from_env({"LONGVID_API_TOKENS": TOKEN, "LONGVID_STORE": "s3://renders/api-test"})
    renderer = RecordingRenderer()
    client = TestClient(create_api(PlanService("offline"), renderer, settings))
    png = base64.b64encode(image_bytes("PNG")).decode()
    response = client.post("/v1/renders", json={**SMALL, "reference_images": [{"data_base64": png}]}, headers={**AUTH, "Idempotency-Key": "s3-1"})
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    assert client.post("/v1/renders", json={**SMALL, "reference_images": [{"data_base64": png}]},
                       headers={**AUTH, "Idempotency-Key": "s3-1"}).json()["id"] == run_id
    assert [r["id"] for r in client.get("/v1/renders", headers=AUTH).json()["renders"]] == [run_id]

    store = open_store("s3://renders/api-test")
    run = store.open(run_id)
    assert not run.create_exclusive("request.json", b"{}")  # a second replica cannot take the id
    shutil.rmtree(store.scratch_root / "state" / "inputs")  # another node: no local copy of the image yet
    record = RenderStore(open_store("s3://renders/api-test")).load(run_id)
    assert record is not None and record.manifest.spec.reference_images[0].is_file()
    assert client.delete(f"/v1/renders/{run_id}", headers=AUTH).status_code == 202
    assert json.loads(run.read_bytes(CANCEL))["attempt"] == renderer.started[0][1]
    assert TOKEN.encode() not in run.read_bytes("request.json")
