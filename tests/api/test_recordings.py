"""Recordings: Range requests, who may fetch, signed URLs, path tricks, missing files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.api.conftest import FIXTURE_WAV, MONITOR, T0, Api
from web.api.signing import signature

WAV = FIXTURE_WAV.read_bytes()


async def _call_with_recording(api: Api, token: str, stored: str, size: int = 1000) -> str:
    site = await api.site(token)
    return await api.call(
        site["defaults"]["initial"], "+79161234567", T0, recording=stored, size=size
    )


async def test_full_and_partial_content(api: Api) -> None:
    _, token = await api.account()
    api.put_recording("2026/03/call.wav")
    call_id = await _call_with_recording(api, token, f"{MONITOR}/2026/03/call.wav")
    url = api.base + f"/api/v1/calls/{call_id}/recording"
    headers = {"Authorization": f"Bearer {token}"}
    async with api.session.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "audio/wav"
        assert response.headers["Accept-Ranges"] == "bytes"
        assert await response.read() == WAV
    async with api.session.get(url, headers={**headers, "Range": "bytes=0-99"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 0-99/{len(WAV)}"
        assert await response.read() == WAV[:100]


async def test_relative_stored_path_maps_under_the_recordings_dir(api: Api) -> None:
    _, token = await api.account()
    api.put_recording("rel/call.wav")
    call_id = await _call_with_recording(api, token, "rel/call.wav")
    assert await api.ok("GET", f"/api/v1/calls/{call_id}/recording", token) == WAV


async def test_another_account_gets_404(api: Api) -> None:
    _, token = await api.account("a")
    _, other = await api.account("b")
    api.put_recording("call.wav")
    call_id = await _call_with_recording(api, token, f"{MONITOR}/call.wav")
    status, answer = await api.req("GET", f"/api/v1/calls/{call_id}/recording", other)
    assert (status, answer["error"]["code"]) == (404, "not_found")
    status, _ = await api.req("GET", f"/api/v1/calls/{call_id}/recording", None)
    assert status == 401


async def test_signed_url_plays_without_a_header_and_bad_ones_are_refused(api: Api) -> None:
    _, token = await api.account()
    api.put_recording("call.wav")
    call_id = await _call_with_recording(api, token, f"{MONITOR}/call.wav")
    call = await api.ok("GET", f"/api/v1/calls/{call_id}", token)
    signed = call["recording_url"]
    assert signed.startswith(api.base) and "sig=" in signed
    status, body = await api.req("GET", signed, None)
    assert (status, body) == (200, WAV)
    key = api.services.signing_key
    past = int(time.time()) - 1
    path = f"/api/v1/calls/{call_id}/recording"
    refused = [
        signed[:-4] + ("0000" if not signed.endswith("0000") else "1111"),  # tampered signature
        f"{path}?exp={past}&sig={signature(key, call_id, past)}",  # expired
        f"{path}?exp={past + 3600}&sig={signature(key, call_id, past)}",  # exp changed
        f"{path}?exp={past + 3600}&sig={signature(key, 'other', past + 3600)}",  # other call
        f"{path}?sig=abc",
    ]
    for url in refused:
        status, answer = await api.req("GET", url, None)
        assert (status, answer["error"]["code"]) == (403, "forbidden"), url


@pytest.mark.parametrize(
    "stored",
    [
        f"{MONITOR}/../../../etc/passwd",
        "../outside/secret.wav",
        "/etc/passwd",
        "/var/spool/asterisk/monitorx/call.wav",
        f"{MONITOR}/link.wav",  # a symlink pointing outside
        f"{MONITOR}/dir-link/secret.wav",  # a symlinked folder pointing outside
    ],
)
async def test_path_tricks_are_refused(api: Api, stored: str) -> None:
    outside = api.recordings.parent / "outside"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(WAV)
    (api.recordings / "link.wav").symlink_to(outside / "secret.wav")
    (api.recordings / "dir-link").symlink_to(outside, target_is_directory=True)
    _, token = await api.account()
    call_id = await _call_with_recording(api, token, stored)
    status, answer = await api.req("GET", f"/api/v1/calls/{call_id}/recording", token)
    assert (status, answer["error"]["code"]) == (404, "recording_refused"), answer
    assert "not served" in answer["error"]["message"]


async def test_a_symlink_inside_the_folder_is_fine(api: Api) -> None:
    real = api.put_recording("real.wav")
    (api.recordings / "alias.wav").symlink_to(real)
    _, token = await api.account()
    call_id = await _call_with_recording(api, token, f"{MONITOR}/alias.wav")
    assert await api.ok("GET", f"/api/v1/calls/{call_id}/recording", token) == WAV


async def test_missing_file_and_no_recording_are_reported_clearly(api: Api) -> None:
    _, token = await api.account()
    call_id = await _call_with_recording(api, token, f"{MONITOR}/gone.wav")
    status, answer = await api.req("GET", f"/api/v1/calls/{call_id}/recording", token)
    assert (status, answer["error"]["code"]) == (404, "recording_missing")
    assert "gone.wav" in answer["error"]["message"]
    assert "not in the recordings folder" in answer["error"]["message"]
    site = await api.site(token, base=500)
    plain = await api.call(site["defaults"]["initial"], None, T0)
    status, answer = await api.req("GET", f"/api/v1/calls/{plain}/recording", token)
    assert (status, answer["error"]["code"]) == (404, "recording_missing")
    assert "has no recording" in answer["error"]["message"]


async def test_header_only_wav_gives_no_recording_url(api: Api, tmp_path: Path) -> None:
    _, token = await api.account()
    call_id = await _call_with_recording(api, token, f"{MONITOR}/empty.wav", size=44)
    assert (await api.ok("GET", f"/api/v1/calls/{call_id}", token))["recording_url"] is None
