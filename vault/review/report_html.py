"""report.html: the chain-of-custody report in a package, for people (Chinese and English).

Pure: renders from values; everything is HTML-escaped. It states facts the package proves and
tells the reader how to check them independently; it is itself listed (with its hash) in the
signed manifest. Times are shown in the deployment's zone (``export.timezone``) with their UTC
offset (the entries themselves keep UTC); the checkpoint root is shown in base64, exactly as
``evault-verify`` and the checkpoint text print it.
"""

from __future__ import annotations

import html
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from vault.config import DEFAULT_TIMEZONE, zone

_KIND_ZH = {
    "acquired": "采集入库",
    "reoffered": "重复提交",
    "derived": "生成衍生文件",
    "redacted": "生成脱敏副本",
    "linked": "关联案件",
    "unlinked": "解除关联",
    "labelled": "密级变更",
    "accessed": "访问",
    "denied": "拒绝访问",
    "exported": "导出",
    "disposed": "处置",
}
_FILE_ZH = {
    "original": "原始文件",
    "proxy": "播放代理",
    "poster": "封面",
    "clip": "片段",
    "redacted": "脱敏副本",
    "redaction-spec": "脱敏规格",
    "fingerprint": "指纹",
}


@dataclass
class ReportItem:
    """One evidence item of the report, and the ledger entries of its custody timeline."""

    evidence_id: str
    sha256: str
    size: int
    file_name: str
    device_id: str | None
    officer_id: str | None
    recorded_at: datetime | None
    acquired_at: datetime
    acquired_index: int
    timeline: list[int]
    files: list[tuple[str, str, str]]  # (kind, path, sha256)
    entries: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _when(t: datetime | None, tz: tzinfo) -> str:
    """``t`` in zone ``tz`` with its offset, e.g. ``2026-03-01 17:00:00 +08:00``."""
    if t is None:
        return "—"
    local = t.astimezone(tz)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"


def _entry_time(value: object, tz: tzinfo) -> str:
    """An entry's RFC 3339 UTC ``time`` shown like ``_when`` (as given if it does not parse)."""
    if not isinstance(value, str):
        return "—" if value is None else str(value)
    try:
        return _when(datetime.fromisoformat(value.replace("Z", "+00:00")), tz)
    except ValueError:
        return value


def _zone_label(tz: tzinfo, at: datetime) -> str:
    offset = at.astimezone(tz).strftime("%z")
    return f"{tz}, UTC{offset[:3]}:{offset[3:]}"


def _timeline(item: ReportItem, tz: tzinfo) -> str:
    rows = []
    for idx in item.timeline:
        entry = item.entries.get(idx, {})
        kind = str(entry.get("kind", "?"))
        detail = entry.get("action") or entry.get("rendition") or ""
        rows.append(
            f"<tr><td>{idx}</td><td>{_e(_entry_time(entry.get('time'), tz))}</td>"
            f"<td>{_e(_KIND_ZH.get(kind, kind))} / {_e(kind)}</td><td>{_e(detail)}</td></tr>"
        )
    return "".join(rows)


def _timestamp_row(timestamp: tuple[str, str] | None) -> str:
    if timestamp is None:
        return ""
    when, tsa = timestamp
    return (
        f"<tr><th>可信时间戳 Time-stamp (RFC 3161)</th><td>{_e(when)} — {_e(tsa)}<br>"
        "检查点最晚于此时已存在；用 <code>evault-verify --tsa-ca TSA-CA.pem</code> 核验。"
        " The checkpoint existed by then; check with <code>evault-verify --tsa-ca TSA-CA.pem"
        "</code> (timestamp.tsr).</td></tr>\n"
    )


def _sm2_row(sm2: tuple[bool, str, str] | None) -> str:
    if sm2 is None:
        return ""
    cosigned, name, fingerprint = sm2
    if not cosigned:
        return (
            "<tr><th>SM2 联署 SM2 cosignature</th><td>否 No: 此检查点无 SM2 签名 "
            f"(key <code>{_e(name)}</code>)。This checkpoint carries no SM2 signature.</td></tr>\n"
        )
    return (
        f"<tr><th>SM2 联署 SM2 cosignature</th><td>是 Yes — <code>{_e(name)}</code>, "
        f"公钥指纹 key fingerprint (SHA-256) <code>{_e(fingerprint)}</code><br>"
        "用 <code>evault-verify --sm2-key SM2-CERT.pem</code> 核验。"
        " Check with <code>evault-verify --sm2-key SM2-CERT.pem</code>.</td></tr>\n"
    )


def _witness_row(witnesses: tuple[str, ...]) -> str:
    if not witnesses:
        return ""
    names = ", ".join(f"<code>{_e(w)}</code>" for w in witnesses)
    return (
        f"<tr><th>见证 Witnesses (cosignature/v1)</th><td>{names}<br>"
        "这些见证方已联署该检查点；用 <code>evault-verify --witness VKEY --witness-threshold N"
        "</code> 核验。 These witnesses cosigned the checkpoint; check with <code>evault-verify "
        "--witness VKEY --witness-threshold N</code> (cosignatures).</td></tr>\n"
    )


def render_report(
    *,
    case_id: str,
    case_label: str,
    exported_by: str,
    exported_at: str,
    checkpoint_size: int,
    root_hash: bytes,
    vkey: str,
    items: list[ReportItem],
    timezone: str = DEFAULT_TIMEZONE,
    timestamp: tuple[str, str] | None = None,
    sm2: tuple[bool, str, str] | None = None,
    witnesses: tuple[str, ...] = (),
) -> str:
    """The whole report as one self-contained HTML page (no scripts, no external assets);
    times in ``timezone`` with their offset, the root in base64 (module docstring);
    ``timestamp``: the (time, TSA name) the checkpoint's RFC 3161 token states, if any;
    ``sm2``: (cosigned, key name, key fingerprint) when the service has an SM2 key;
    ``witnesses``: the names of the witnesses whose cosignatures the package carries."""
    tz = zone(timezone)
    exported = datetime.fromisoformat(exported_at.replace("Z", "+00:00"))
    zone_label = _e(_zone_label(tz, exported))
    sections = []
    for item in items:
        files = "".join(
            f"<tr><td>{_e(_FILE_ZH.get(k, k))} / {_e(k)}</td><td><code>{_e(p)}</code></td>"
            f"<td><code>{_e(h)}</code></td></tr>"
            for k, p, h in item.files
        )
        sections.append(
            f"""<section>
<h2>证据 Evidence <code>{_e(item.evidence_id)}</code></h2>
<table>
<tr><th>文件名 File name</th><td>{_e(item.file_name)}</td></tr>
<tr><th>记录仪 Device</th><td>{_e(item.device_id or "—")}</td></tr>
<tr><th>执法人员 Officer</th><td>{_e(item.officer_id or "—")}</td></tr>
<tr><th>录制时间 Recorded</th><td>{_e(_when(item.recorded_at, tz))}</td></tr>
<tr><th>入库时间 Acquired</th><td>{_e(_when(item.acquired_at, tz))}</td></tr>
<tr><th>SHA-256</th><td><code>{_e(item.sha256)}</code> ({item.size} bytes 字节)</td></tr>
<tr><th>账本序号 Ledger index</th><td>{item.acquired_index}</td></tr>
</table>
<h3>文件 Files</h3>
<table><tr><th>类型 Kind</th><th>路径 Path</th><th>SHA-256</th></tr>{files}</table>
<h3>保管链 Custody timeline</h3>
<table><tr><th>序号 Index</th><th>时间 Time ({zone_label})</th><th>事件 Event</th>
<th>详情 Detail</th></tr>
{_timeline(item, tz)}</table>
</section>"""
        )
    body = "\n".join(sections) or "<p>无可导出的证据 No exportable evidence.</p>"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>证据包 Evidence package — {_e(case_id)}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;margin:.5rem 0}}td,th{{border:1px solid #999;padding:.2rem .5rem;
text-align:left;vertical-align:top}}code{{word-break:break-all}}</style></head><body>
<h1>证据包保管链报告 Chain-of-custody report</h1>
<table>
<tr><th>案件 Case</th><td>{_e(case_id)} (密级 label: {_e(case_label)})</td></tr>
<tr><th>导出人 Exported by</th><td>{_e(exported_by)}</td></tr>
<tr><th>导出时间 Exported at</th><td>{_e(_entry_time(exported_at, tz))}</td></tr>
<tr><th>时区 Time zone</th><td>{zone_label}</td></tr>
<tr><th>检查点 Checkpoint</th><td>size {checkpoint_size}, root (base64, as evault-verify prints
it) <code>{_e(b64encode(root_hash).decode())}</code></td></tr>
{_timestamp_row(timestamp)}{_sm2_row(sm2)}{_witness_row(witnesses)}</table>
<h2>如何独立验证 How to verify independently</h2>
<p>从可信渠道（而非本包）获得日志公钥，然后运行：<br>
Obtain the log's public key through a trusted channel (not from this package), then run:</p>
<pre>evault-verify PACKAGE --vkey '{_e(vkey)}'</pre>
<p>验证程序检查每个文件的哈希、每条账本记录的包含证明、检查点签名、承诺的开启值和清单签名；
仅当全部成立时返回 0。The verifier checks every file hash, every entry's inclusion proof, the
checkpoint signature, every disclosed commitment and the manifest signature, and exits 0 only
when all hold. The key above is for convenience: compare it with the one you trust.</p>
{body}
</body></html>
"""
