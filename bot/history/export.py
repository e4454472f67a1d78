"""``/export``: a thread as a zip that shows who made each picture, from what, and how.

People who use AI image editing at work need an audit trail: which prompts and choices
led to a picture, which pictures went in, which model made it, what it cost. The zip
holds, in one folder:

* ``index.html`` — the version tree with thumbnails and every version's prompt, author,
  time, model and cost. It loads nothing from anywhere: CSS is inline and thumbnails are
  ``data:`` URIs, so it still shows the whole tree when a zip viewer opens only that one
  file (Windows Explorer and most phone apps do), and a Content-Security-Policy forbids
  any other source or script, so a prompt can never make the page run code or phone home.
  Full-size pictures are plain relative links into ``images/``;
* ``provenance.json`` — the same for machines: every turn with its parent, role, author,
  time, model, prompt, cost, and the SHA-256 of every input and output picture;
* ``images/`` — the pictures at full size, byte for byte as stored, so their SHA-256
  matches the manifest (and Content Credentials embedded in them survive).

A size cap is checked from the stored sizes before any picture is loaded, and again while
the zip is written, so an oversized thread fails fast with :class:`ExportTooLarge`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import mimetypes
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from bot.core.ports.threads import TurnRegion
from bot.core.threads import ImageRef, Thread, Turn
from bot.history.contact_sheet import fitted_picture, outlined
from bot.history.version_tree import VersionNode, VersionTree, build_version_tree, is_version
from bot.kit.formatting import MICROS_PER_USD, dollars, readable_size

#: Telegram bots may send documents up to 50 MB; leave room for the request around it
DEFAULT_MAX_BYTES: Final = 45_000_000
FORMAT: Final = "chatbrush-export/1"
THUMB_SIDE: Final = 320
THUMB_QUALITY: Final = 80
_STORED_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif",
                                  "image/heic", "image/heif", "image/avif"})
_EXTENSIONS: Final = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
                      "image/gif": ".gif", "image/heic": ".heic", "image/heif": ".heif",
                      "image/avif": ".avif"}

ImageLoader = Callable[[str], bytes]


class ExportTooLarge(Exception):
    """The export would exceed the size cap; ``user_message`` can be shown as is."""

    def __init__(self, *, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        self.user_message = (
            f"This conversation is too big to export: it comes to about {readable_size(size)}, "
            f"and an export can be at most {readable_size(limit)}.")
        super().__init__(self.user_message)


@dataclass(frozen=True)
class ThreadExport:
    """The zip and what went into it."""

    data: bytes
    filename: str  # e.g. chatbrush-thread-7-20250102-030405.zip
    folder: str  # the one top-level folder inside the zip
    missing_images: tuple[str, ...]  # SHA-256 of pictures whose bytes are gone or damaged


def export_thread(thread: Thread, turns: Sequence[Turn], load_image: ImageLoader, *,
                  costs: Mapping[int, float] | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES,
                  exported_at: float | None = None,
                  regions: Mapping[int, TurnRegion] | None = None) -> ThreadExport:
    """Build the export zip of one thread (the caller checks it belongs to the chat).

    ``costs`` maps model-turn ids to USD; ``regions`` are the marked areas of region
    edits by turn id (their masks go in ``regions/``, the pictures kept beside the turns
    in ``images/``, and a region edit's thumbnail shows the area's edge). ``load_image``
    raises ``LookupError`` for a picture that was removed: the export then says so
    instead of failing. Raises
    :class:`ExportTooLarge` when the zip would exceed ``max_bytes``.
    """
    moment = datetime.now(UTC) if exported_at is None else datetime.fromtimestamp(
        exported_at, UTC)
    ordered = sorted(turns, key=lambda t: t.id)
    tree = build_version_tree(ordered, thread.head_id)
    regions = regions or {}
    refs = _unique_refs(ordered, regions)
    stored_size = sum(ref.size for ref in refs.values())
    if stored_size > max_bytes:
        raise ExportTooLarge(size=stored_size, limit=max_bytes)

    folder = f"chatbrush-thread-{thread.id}-{moment:%Y%m%d-%H%M%S}"
    buffer = io.BytesIO()
    files = _Files(_file_names(ordered, regions), regions=regions)
    with zipfile.ZipFile(buffer, "w") as archive:
        stamp = moment.timetuple()[:6]
        _write_masks(archive, folder, ordered, files, stamp)
        for sha, ref in refs.items():
            data = _checked_bytes(ref, load_image, files)
            if data is None:
                continue
            path = files.path_of[sha]
            _write(archive, f"{folder}/{path}", data, stamp, compress=ref.mime_type not in
                   _STORED_TYPES)
            files.thumbs[sha] = _thumbnail_uri(data, files.outline_of.get(sha))
            if buffer.tell() > max_bytes:
                raise ExportTooLarge(size=buffer.tell(), limit=max_bytes)
        manifest = _provenance(thread, ordered, tree, files, costs or {}, moment)
        _write(archive, f"{folder}/provenance.json",
               json.dumps(manifest, ensure_ascii=False, indent=2).encode(), stamp, compress=True)
        page = _Page(thread, ordered, tree, files, costs or {}, moment).render()
        _write(archive, f"{folder}/index.html", page.encode(), stamp, compress=True)
    data = buffer.getvalue()
    if len(data) > max_bytes:
        raise ExportTooLarge(size=len(data), limit=max_bytes)
    return ThreadExport(data, f"{folder}.zip", folder, tuple(files.missing))


# --------------------------------------------------------------------------- pictures


@dataclass
class _Files:
    """Where each picture went in the zip, or why it is not there."""

    path_of: dict[str, str]  # sha256 → path inside the folder
    thumbs: dict[str, str] = field(default_factory=dict)  # sha256 → data: URI
    missing: dict[str, str] = field(default_factory=dict)  # sha256 → why it is absent
    regions: Mapping[int, TurnRegion] = field(default_factory=dict)  # by turn id
    masks: dict[int, str] = field(default_factory=dict)  # turn id → its mask's path
    outline_of: dict[str, bytes] = field(default_factory=dict)  # sha256 → mask to draw

    def file(self, ref: ImageRef) -> str | None:
        return None if ref.sha256 in self.missing else self.path_of.get(ref.sha256)


def _unique_refs(turns: Iterable[Turn], regions: Mapping[int, TurnRegion]
                 ) -> dict[str, ImageRef]:
    refs: dict[str, ImageRef] = {}
    for turn in turns:
        kept = regions.get(turn.id)
        for ref in [*turn.images, *([kept.image] if kept and kept.image else [])]:
            refs.setdefault(ref.sha256, ref)
    return refs


def _stem(turn: Turn) -> str:
    return f"v{turn.version}" if is_version(turn) else f"turn{turn.id}"


def _file_names(turns: Iterable[Turn], regions: Mapping[int, TurnRegion]) -> dict[str, str]:
    """Readable names: a version's pictures after it (v3.png), uploads after their turn;
    a region edit's model picture v3-whole.png, the marked copy sent turn5-marked.jpg."""
    names: dict[str, str] = {}
    for turn in turns:
        stem = _stem(turn)
        images = turn.images
        for index, ref in enumerate(images, start=1):
            suffix = f"-{index}" if len(images) > 1 else ""
            names.setdefault(ref.sha256, f"images/{stem}{suffix}{_extension(ref.mime_type)}")
        kept = regions.get(turn.id)
        if kept is not None and kept.image is not None:
            kind = "whole" if turn.is_model else "marked"
            names.setdefault(kept.image.sha256,
                             f"images/{stem}-{kind}{_extension(kept.image.mime_type)}")
    return names


def _write_masks(archive: zipfile.ZipFile, folder: str, turns: Iterable[Turn], files: _Files,
                 stamp: tuple[int, ...]) -> None:
    """Each region edit's mask as ``regions/<turn>-mask.png`` (white: the marked area, at
    the working size; the picture's own size is in the manifest)."""
    for turn in turns:
        kept = files.regions.get(turn.id)
        if kept is None:
            continue
        path = f"regions/{_stem(turn)}-mask.png"
        _write(archive, f"{folder}/{path}", kept.mask_png, stamp, compress=False)
        files.masks[turn.id] = path
        if is_version(turn) and turn.images:
            files.outline_of[turn.images[0].sha256] = kept.mask_png


def _extension(mime_type: str) -> str:
    return _EXTENSIONS.get(mime_type) or mimetypes.guess_extension(mime_type) or ".bin"


def _checked_bytes(ref: ImageRef, load_image: ImageLoader, files: _Files) -> bytes | None:
    """The stored bytes, only if they are still there and still match their hash."""
    try:
        data = load_image(ref.sha256)
    except LookupError:
        files.missing[ref.sha256] = "removed"
        return None
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        files.missing[ref.sha256] = "damaged: the stored bytes no longer match their SHA-256"
        return None
    return data


def _write(archive: zipfile.ZipFile, name: str, data: bytes, stamp: tuple[int, ...], *,
           compress: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=(stamp[0], stamp[1], stamp[2], stamp[3], stamp[4],
                                            stamp[5]))
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _thumbnail_uri(data: bytes, region: bytes | None = None) -> str:
    picture = fitted_picture(data, THUMB_SIDE)
    if picture is None:
        return ""
    if region is not None:
        picture = outlined(picture, region)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- provenance.json


def _provenance(thread: Thread, turns: Sequence[Turn], tree: VersionTree, files: _Files,
                costs: Mapping[int, float], moment: datetime) -> dict[str, Any]:
    nodes = {node.turn_id: node for node in tree.versions}
    current = tree.current
    return {
        "format": FORMAT,
        "exported_at": _iso(moment),
        "thread": {
            "id": thread.id,
            "chat": {"platform": thread.chat.platform, "chat_id": thread.chat.chat_id,
                     "topic_id": thread.chat.topic_id},
            "external_key": thread.external_key,
            "created_at": _iso_ts(thread.created_at),
            "created_by": thread.created_by,
            "head_turn_id": thread.head_id,
            "current_version": current.version if current else None,
        },
        "total_cost_usd": _total_cost(turns, costs),
        "turns": [_turn_record(turn, nodes.get(turn.id), files, costs) for turn in turns],
    }


def _turn_record(turn: Turn, node: VersionNode | None, files: _Files,
                 costs: Mapping[int, float]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": turn.id,
        "parent_id": turn.parent_id,
        "role": turn.role,
        "status": turn.status.value,
        "author": {"id": turn.author_id, "name": turn.author_name},
        "created_at": _iso_ts(turn.created_at),
        "text": turn.text,
        "images": [_image_record(ref, files) for ref in turn.images],
    }
    if turn.is_model:
        record["model"] = turn.author_name
        record["version"] = node.version if node else None
        record["parent_version"] = node.parent_version if node else None
        record["prompt_turn_id"] = node.prompt_turn_id if node else None
        record["prompt"] = node.prompt if node else None
        record["cost_usd"] = costs.get(turn.id)
    kept = files.regions.get(turn.id)
    if kept is not None:
        record["region"] = {
            "mask": files.masks.get(turn.id), "width": kept.width, "height": kept.height,
            ("whole_picture" if turn.is_model else "marked_copy"):
                _image_record(kept.image, files) if kept.image else None,
        }
    if turn.error:
        record["error"] = turn.error
    return record


def _image_record(ref: ImageRef, files: _Files) -> dict[str, Any]:
    record: dict[str, Any] = {
        "sha256": ref.sha256, "mime_type": ref.mime_type, "width": ref.width,
        "height": ref.height, "bytes": ref.size, "file": files.file(ref),
    }
    if ref.sha256 in files.missing:
        record["missing"] = files.missing[ref.sha256]
    return record


def _total_cost(turns: Iterable[Turn], costs: Mapping[int, float]) -> float | None:
    known = [costs[t.id] for t in turns if t.id in costs]
    return round(sum(known), 6) if known else None


# --------------------------------------------------------------------------- index.html

_CELL_WIDTH: Final = 190
_CELL_HEIGHT: Final = 200
_THUMB: Final = 140
_PAD: Final = 16

_STYLE: Final = """
:root { color-scheme: light; --accent: #ff7a00; --line: #3465a4; --muted: #666; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans",
       "PingFang SC", "Microsoft YaHei", sans-serif; margin: 0; color: #222; background: #fafafa; }
header, section, footer { padding: 16px 20px; max-width: 1100px; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: 0 0 8px; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.iso, .id, .sha { color: var(--muted); font-size: 0.85em; }
.sha { font-family: ui-monospace, Menlo, Consolas, monospace; }
.tree-scroll { overflow-x: auto; background: #fff; border: 1px solid #ddd; border-radius: 8px; }
.tree { position: relative; }
.tree svg { position: absolute; left: 0; top: 0; }
.tree path { fill: none; stroke: var(--line); stroke-width: 3; }
.node { position: absolute; width: 140px; text-align: left; color: #222;
        text-decoration: none; }
.node img, .node .missing { width: 140px; height: 140px; object-fit: contain;
        background: #ececec; border: 2px solid #bbb; }
.node img, article .full img { display: block; }
.node .label { font-size: 1.1rem; font-weight: 600; }
.node.current img, .node.current .missing { border: 6px solid var(--accent); }
.node.current .label, .badge { background: var(--accent); color: #fff; border-radius: 8px;
        padding: 0 8px; }
.missing { display: flex; align-items: center; justify-content: center; color: var(--muted);
        font-size: 0.85rem; text-align: center; }
article { display: flex; gap: 20px; background: #fff; border: 1px solid #ddd;
          border-radius: 8px; padding: 14px; margin: 0 0 14px; flex-wrap: wrap; }
article.current { border: 3px solid var(--accent); }
article .full img, article .full .missing { width: 240px; height: 240px; object-fit: contain;
          background: #ececec; }
article .about { flex: 1 1 320px; min-width: 0; }
article h3 { margin: 0 0 6px; }
.from { color: var(--muted); font-weight: normal; font-size: 0.9em; }
.said { white-space: pre-wrap; }
.prompt { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 1.05rem;
          background: #f3f3f3; border-radius: 6px; padding: 8px 10px; margin: 0 0 10px; }
article .inputs .input img, article .inputs .input .missing { width: 72px; height: 72px;
          object-fit: contain; background: #ececec; display: inline-flex; margin: 0 6px 6px 0; }
footer { color: var(--muted); font-size: 0.9rem; }
"""


class _Page:
    """The HTML page; every user-provided string goes through :func:`_e`."""

    def __init__(self, thread: Thread, turns: Sequence[Turn], tree: VersionTree, files: _Files,
                 costs: Mapping[int, float], moment: datetime) -> None:
        self.thread, self.turns, self.tree = thread, turns, tree
        self.files, self.costs, self.moment = files, costs, moment
        self.by_id = {turn.id: turn for turn in turns}

    def render(self) -> str:
        title = f"Chatbrush conversation {self.thread.id}"
        return "\n".join([
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            # Nothing but inline styles and data: images, ever: offline and inert.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">",
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
            self._header(title),
            self._tree_section(),
            self._versions_section(),
            self._origin_section(),
            "<footer><p>The same record in machine-readable form, with the SHA-256 of every "
            "picture, is in <code>provenance.json</code> beside this page; the pictures at "
            "full size are in <code>images/</code>.</p></footer>",
            "</body></html>",
        ])

    def _header(self, title: str) -> str:
        chat = self.thread.chat
        where = f"{chat.platform} chat {chat.chat_id}"
        if chat.topic_id:
            where += f", topic {chat.topic_id}"
        current = self.tree.current
        total = _total_cost(self.turns, self.costs)
        started = f"{_when(self.thread.created_at)} by {self._person(self.thread.created_by)}"
        facts = [
            ("Chat", _e(where)),
            ("Started", started),
            ("Versions", str(len(self.tree.versions))),
            ("Current version", _e(current.label) if current else "none"),
        ]
        if total is not None:
            facts.append(("Total cost", _e(_usd(total))))
        facts.append(("Exported", _when(self.moment.timestamp())))
        return f"<header><h1>{_e(title)}</h1>{_facts(facts)}</header>"

    def _person(self, user_id: str) -> str:
        """A user's name as they appear in the thread, with their platform id."""
        name = next((t.author_name for t in self.turns
                     if t.author_id == user_id and t.role == "user" and t.author_name), "")
        id_part = f'<span class="id">(user id {_e(user_id)})</span>'
        return f"{_e(name)} {id_part}" if name else id_part

    def _tree_section(self) -> str:
        tree = self.tree
        width = _PAD * 2 + (tree.max_depth + 1) * _CELL_WIDTH
        height = _PAD * 2 + max(tree.lane_count, 1) * _CELL_HEIGHT
        paths, nodes = [], []
        origin = tree.origin
        if origin is not None:
            nodes.append(self._tree_node("original", "#original", origin.lane, origin.depth,
                                         origin.images, current=origin.is_current))
        for node in tree.versions:
            nodes.append(self._tree_node(node.label, f"#{node.label}", node.lane, node.depth,
                                         node.images, current=node.is_current))
            parent: tuple[int, int] | None = None
            if node.parent_version is not None:
                above = tree.version(node.parent_version)
                parent = (above.lane, above.depth)
            elif origin is not None:
                parent = (origin.lane, origin.depth)
            if parent is not None:
                paths.append(_tree_path(parent, (node.lane, node.depth)))
        svg = (f'<svg width="{width}" height="{height}" aria-hidden="true"><defs>'
               '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="5" '
               'markerHeight="5" orient="auto"><path d="M0,0 L10,5 L0,10 z" '
               'style="fill:var(--line);stroke:none"/></marker></defs>'
               + "".join(f'<path d="{d}" marker-end="url(#arrow)"/>' for d in paths)
               + "</svg>")
        return ('<section id="tree"><h2>Version tree</h2><div class="tree-scroll">'
                f'<div class="tree" style="width:{width}px;height:{height}px">{svg}'
                + "".join(nodes) + "</div></div></section>")

    def _tree_node(self, label: str, href: str, lane: int, depth: int,
                   images: Sequence[ImageRef], *, current: bool) -> str:
        left, top = _PAD + depth * _CELL_WIDTH, _PAD + lane * _CELL_HEIGHT
        css = "node current" if current else "node"
        picture = self._picture(images[0] if images else None, alt=label)
        return (f'<a class="{css}" href="{_e(href)}" style="left:{left}px;top:{top}px">'
                f'{picture}<span class="label">{_e(label)}</span></a>')

    def _versions_section(self) -> str:
        cards = [self._version_card(node) for node in self.tree.versions]
        return '<section id="versions"><h2>Versions</h2>' + "".join(cards) + "</section>"

    def _version_card(self, node: VersionNode) -> str:
        origin = f"from v{node.parent_version}" if node.parent_version is not None else (
            "from the original" if self.tree.origin is not None else "from a prompt")
        badge = ' <span class="badge">current</span>' if node.is_current else ""
        prompt = node.prompt or "(no words: pictures only)"
        asker = _e(node.asked_by_name or "unknown")
        if node.asked_by_id:
            asker += f' <span class="id">(user id {_e(node.asked_by_id)})</span>'
        facts = [("Asked by", asker)]
        said = self.by_id[node.turn_id].text if node.turn_id in self.by_id else ""
        if node.asked_at is not None:
            facts.append(("Asked", _when(node.asked_at)))
        facts += [("Answered", _when(node.created_at)), ("Model", _e(node.model or "unknown"))]
        cost = self.costs.get(node.turn_id)
        if cost is not None:
            facts.append(("Cost", _e(_usd(cost))))
        if said:
            facts.append(("Model's words", f'<span class="said">{_e(said)}</span>'))
        if node.inputs:
            facts.append(("Pictures sent", self._inputs(node.inputs)))
        facts.append(("Files", self._file_list(node.images)))
        kept = self.files.regions.get(node.turn_id)
        if kept is not None:
            facts.append(("Marked area", self._region_facts(node.turn_id, kept)))
        first = node.images[0] if node.images else None
        css = "version current" if node.is_current else "version"
        return (f'<article class="{css}" id="{_e(node.label)}">'
                f'{self._full_link(first, alt=node.label)}<div class="about">'
                f'<h3>{_e(node.label)} <span class="from">{_e(origin)}</span>{badge}</h3>'
                f'<p class="prompt">{_e(prompt)}</p>{_facts(facts)}</div></article>')

    def _region_facts(self, turn_id: int, kept: TurnRegion) -> str:
        """Only the marked area (outlined on the thumbnail) was taken from the model's
        picture; its mask and the model's whole picture are in the zip."""
        parts = ["only the area outlined in yellow was changed"]
        mask = self.files.masks.get(turn_id)
        if mask:
            parts.append(f'<a href="{_e(mask)}">its mask</a>')
        if kept.image is not None:
            parts.append("the model's whole picture: " + self._full_link(
                kept.image, alt="the model's whole picture", css="input"))
        return "; ".join(parts)

    def _origin_section(self) -> str:
        origin = self.tree.origin
        if origin is None:
            return ""
        senders = _e(", ".join(origin.author_names) or "unknown")
        facts = [("Sent by", senders), ("Sent", _when(origin.created_at))]
        if len(origin.images) > 1:
            facts.append(("Pictures", self._inputs(origin.images)))
        facts.append(("Files", self._file_list(origin.images)))
        first = origin.images[0] if origin.images else None
        return ('<section><h2>Original pictures</h2><article id="original">'
                f'{self._full_link(first, alt="original")}<div class="about">'
                f"{_facts(facts)}</div></article></section>")

    def _picture(self, ref: ImageRef | None, *, alt: str) -> str:
        if ref is None:
            return '<span class="missing">no picture</span>'
        uri = self.files.thumbs.get(ref.sha256, "")
        if not uri:
            return '<span class="missing">picture removed</span>'
        return f'<img src="{uri}" alt="{_e(alt)}">'

    def _full_link(self, ref: ImageRef | None, *, alt: str, css: str = "full") -> str:
        """A thumbnail that opens the full-size file (when it is in the zip)."""
        picture = self._picture(ref, alt=alt)
        path = self.files.file(ref) if ref else None
        if path is None:
            return f'<span class="{css}">{picture}</span>'
        return f'<a class="{css}" href="{_e(path)}" title="full size">{picture}</a>'

    def _inputs(self, refs: Sequence[ImageRef]) -> str:
        return '<span class="inputs">' + "".join(
            self._full_link(ref, alt="picture sent", css="input") for ref in refs) + "</span>"

    def _file_list(self, refs: Sequence[ImageRef]) -> str:
        items = []
        for ref in refs:
            path = self.files.file(ref)
            name = (f'<a href="{_e(path)}">{_e(path)}</a>' if path
                    else _e(f"not included ({self.files.missing.get(ref.sha256, 'missing')})"))
            items.append(f'{name} <span class="sha">SHA-256 {_e(ref.sha256)}</span>')
        return "<br>".join(items) or "none"


def _tree_path(parent: tuple[int, int], child: tuple[int, int]) -> str:
    """An SVG path from a parent's thumbnail to its child's: straight, or down the gutter."""
    (parent_lane, parent_depth), (child_lane, child_depth) = parent, child
    x1 = _PAD + parent_depth * _CELL_WIDTH + _THUMB + 4
    y1 = _PAD + parent_lane * _CELL_HEIGHT + _THUMB // 2
    x2 = _PAD + child_depth * _CELL_WIDTH - 4
    y2 = _PAD + child_lane * _CELL_HEIGHT + _THUMB // 2
    if child_lane == parent_lane:
        return f"M{x1},{y1} H{x2}"
    gutter = (x1 + x2) // 2
    return f"M{x1},{y1} H{gutter} V{y2} H{x2}"


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    """A definition list; values are HTML already escaped by the caller."""
    return '<dl class="facts">' + "".join(
        f"<dt>{_e(name)}</dt><dd>{value}</dd>" for name, value in pairs) + "</dl>"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _when(timestamp: float) -> str:
    """A time people read (UTC) next to the exact ISO form machines and auditors use."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    human = f"{moment:%a} {moment.day} {moment:%b %Y, %H:%M} UTC"
    return (f'<time datetime="{_iso(moment)}">{_e(human)}</time> '
            f'<span class="iso">{_iso(moment)}</span>')


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _iso_ts(timestamp: float) -> str:
    return _iso(datetime.fromtimestamp(timestamp, UTC))


def _usd(amount: float) -> str:
    """The export keeps costs in dollars (its JSON's ``cost_usd``); shown as everywhere."""
    return dollars(round(amount * MICROS_PER_USD))
