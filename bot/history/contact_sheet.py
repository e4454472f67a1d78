"""``/history`` as a picture: one PNG with a thumbnail per version, the tree drawn in it.

People would rather see their versions than read about them. The sheet draws the
:mod:`bot.history.version_tree` layout — a lane per branch, a column per generation, arrows from
parent to child — with the current version framed in orange and its label on an orange
pill, so the answer to "which one am I editing?" is visible at a glance.

It has to stay legible on a phone. Telegram shows a photo no larger than 2560 px on its
long side and a phone screen is about 400 points wide, so the sheet is at most 1080 px
wide, aims to stay under 2560 px tall, and keeps its labels at a fixed, readable size
while the thumbnails shrink. Three arrangements cover the shapes threads take:

* *plain*: lanes as rows, generations as columns (up to six), every arrow drawn;
* *folded*: a long line of versions wraps onto the next row like text; a wrapped
  version gets a small "◂ v7" tag instead of an arrow from the far end of the row above;
* *stacked*: many short branches (one photo, twenty variations) are split into stacks
  side by side, tagged the same way where a parent sits in another stack;
* *packed*: a tree too bushy for any of those at a legible size has its lanes laid end
  to end in reading order, with arrows between neighbours and tags for the rest.

Only the font bundled with Pillow is used, so the sheet looks the same on every server;
a prompt with characters that font lacks (Chinese, emoji) is left out rather than drawn
as boxes, and the version labels carry the sheet on their own.
"""

from __future__ import annotations

import enum
import io
import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Final

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from bot.core.threads import ImageRef, Turn, newest_keeping
from bot.history.version_tree import VersionNode, VersionTree, build_version_tree

Rgb = tuple[int, int, int]
Box = tuple[int, int, int, int]  # left, top, right, bottom: the thumbnail's square
Point = tuple[int, int]

MAX_WIDTH: Final = 1080
TARGET_HEIGHT: Final = 2560
MAX_TILE: Final = 300
MIN_TILE: Final = 72
MAX_COLUMNS: Final = 6
CAPTION_MIN_TILE: Final = 140  # below this a prompt line would show three letters
PACK_BELOW_TILE: Final = 120  # a tree drawn smaller than this is packed instead

MARGIN: Final = 28
GUTTER: Final = 44
ROW_GAP: Final = 22
LABEL_SIZE: Final = 34
MIN_LABEL_SIZE: Final = 24
CAPTION_SIZE: Final = 22
LABEL_LINE: Final = 46
CAPTION_LINE: Final = 30
LINE_WIDTH: Final = 4
FRAME: Final = 2
CURRENT_FRAME: Final = 8

BACKGROUND: Final[Rgb] = (255, 255, 255)
TILE_BACKGROUND: Final[Rgb] = (236, 236, 236)
FRAME_COLOUR: Final[Rgb] = (190, 190, 190)
TEXT_COLOUR: Final[Rgb] = (34, 34, 34)
CAPTION_COLOUR: Final[Rgb] = (96, 96, 96)
CURRENT_COLOUR: Final[Rgb] = (255, 122, 0)
#: the edge of the marked area on a region edit's tile (the outline the model was shown)
REGION_COLOUR: Final[Rgb] = (255, 230, 0)
ON_CURRENT: Final[Rgb] = (255, 255, 255)
#: one colour per lane, so crossing or tagged connectors can still be told apart
LANE_COLOURS: Final[tuple[Rgb, ...]] = (
    (52, 101, 164), (78, 154, 6), (117, 80, 123), (6, 140, 150), (143, 89, 2),
    (193, 60, 140), (85, 87, 83),
)

ImageLoader = Callable[[str], bytes]
#: arrangements where every lane keeps to rows of its own, so elbows cross nothing
ELBOW_ARRANGEMENTS: Final = frozenset({"plain", "stacked"})
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class LinkKind(enum.Enum):
    STRAIGHT = "straight"  # parent directly left of the child, same row
    ELBOW = "elbow"  # down the gutter right of the parent into a lane below
    TAGGED = "tagged"  # parent elsewhere (row wrap, other stack): a "◂ vN" tag, no line


@dataclass(frozen=True)
class Tile:
    """One thumbnail on the sheet, where it is, and what is written under it."""

    label: str  # "v3", or the origin's label
    version: int | None  # None for the original picture(s)
    box: Box
    row: int
    column: int
    is_current: bool
    caption: str | None  # the prompt as drawn (shortened); None when it was not drawn
    parent_tag: str | None  # "v2" when the parent is elsewhere and named next to the label
    marked: bool = False  # a region edit: the marked area's edge is drawn on the picture


@dataclass(frozen=True)
class Link:
    """A connector from a parent tile to a child tile, as drawn."""

    parent: str
    child: str
    kind: LinkKind
    points: tuple[Point, ...]  # the polyline, child end last; empty for a tag
    colour: Rgb  # the child's lane; the stub leaving the parent has the parent's colour


@dataclass(frozen=True)
class ContactSheet:
    png: bytes
    width: int
    height: int
    tiles: tuple[Tile, ...]
    links: tuple[Link, ...]
    arrangement: str  # "plain", "stacked", "folded" or "packed"

    @property
    def current(self) -> Tile | None:
        return next((t for t in self.tiles if t.is_current), None)

    def tile(self, label: str) -> Tile:
        """The tile labelled ``label``; KeyError when there is none."""
        for tile in self.tiles:
            if tile.label == label:
                return tile
        raise KeyError(label)


def render_contact_sheet(turns: Iterable[Turn], head_id: int | None, load_image: ImageLoader,
                         *, origin_label: str = "original",
                         regions: Mapping[int, bytes] | None = None) -> ContactSheet | None:
    """Draw the thread's versions; None when it has no version yet (say so in text).

    ``load_image`` returns an image's bytes by SHA-256, raising ``LookupError`` for one
    that was removed (forgotten, purged): that tile shows a crossed-out placeholder.
    ``regions`` are the masks (PNG) of region edits by version number: their tiles show
    the marked area's edge.
    """
    tree = build_version_tree(turns, head_id)
    if not tree.versions:
        return None
    if not _drawable(_font(LABEL_SIZE), origin_label):
        origin_label = "original"
    shown = newest_keeping(tree.versions, tree.current)  # sixty still fit a phone
    nodes = _nodes(tree, shown, origin_label, regions or {})
    grid = _arrange(nodes)
    return _draw(nodes, grid, load_image)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Node:
    key: int | None  # version number; None for the origin
    label: str
    parent: int | None  # parent's key
    has_parent: bool  # False for roots (the origin, or versions from text alone)
    lane: int
    depth: int
    is_current: bool
    prompt: str
    images: tuple[ImageRef, ...]
    region: bytes | None = None  # a region edit's mask (PNG)


@dataclass(frozen=True)
class _Grid:
    arrangement: str
    cells: dict[int | None, tuple[int, int]]  # key → (row, column)
    rows: int
    columns: int
    tile: int
    captions: bool


def _nodes(tree: VersionTree, shown: Sequence[VersionNode], origin_label: str,
           regions: Mapping[int, bytes]) -> list[_Node]:
    """The tiles to draw, with lanes and depths renumbered from zero over what is shown,
    so versions left off leave no empty rows or columns behind."""
    with_origin = tree.origin is not None and any(v.parent_version is None for v in shown)
    placed: list[tuple[int, int]] = [(v.lane, v.depth) for v in shown]
    if with_origin and tree.origin is not None:
        placed.append((tree.origin.lane, tree.origin.depth))
    lanes = {lane: index for index, lane in enumerate(sorted({lane for lane, _ in placed}))}
    first_depth = min(depth for _, depth in placed)
    nodes = []
    if with_origin and tree.origin is not None:
        origin = tree.origin
        nodes.append(_Node(None, origin_label, None, False, lanes[origin.lane],
                           origin.depth - first_depth, origin.is_current, "", origin.images))
    for v in shown:
        nodes.append(_Node(
            v.version, v.label, v.parent_version,
            v.parent_version is not None or tree.origin is not None,
            lanes[v.lane], v.depth - first_depth, v.is_current, v.prompt, v.images,
            regions.get(v.version)))
    return nodes


def _arrange(nodes: Sequence[_Node]) -> _Grid:
    """Pick the arrangement that gives the biggest thumbnails within the size targets.

    Arrangements that keep every lane on rows of its own read best, so packing lanes
    end to end is the fallback for bushy trees that would otherwise get tiny thumbnails.
    """
    span = max(n.depth for n in nodes) + 1
    lanes = max(n.lane for n in nodes) + 1
    candidates: list[tuple[str, int, dict[int | None, tuple[int, int]]]] = []
    if span <= MAX_COLUMNS:
        candidates.append(("plain", span, {n.key: (n.lane, n.depth) for n in nodes}))
        for stacks in range(2, MAX_COLUMNS // span + 1):
            per_stack = math.ceil(lanes / stacks)
            if per_stack < lanes:
                candidates.append(("stacked", span * stacks, {
                    n.key: (n.lane % per_stack, (n.lane // per_stack) * span + n.depth)
                    for n in nodes}))
    else:
        for columns in range(MAX_COLUMNS - 2, MAX_COLUMNS + 1):
            candidates.append(("folded", columns, _fold(nodes, columns)))
    best = max((_grid(*candidate) for candidate in candidates), key=_grid_score)
    if best.tile < PACK_BELOW_TILE and len(nodes) > MAX_COLUMNS:
        packed = _grid("packed", MAX_COLUMNS, _pack(nodes, MAX_COLUMNS))
        best = max(best, packed, key=_grid_score)
    return best


def _grid(arrangement: str, columns: int, cells: dict[int | None, tuple[int, int]]) -> _Grid:
    rows = max(row for row, _ in cells.values()) + 1
    tile, captions = _tile_size(rows, columns)
    return _Grid(arrangement, cells, rows, columns, tile, captions)


def _grid_score(grid: _Grid) -> tuple[int, int]:
    """Bigger thumbnails first; among equals (all at the minimum), the shorter sheet."""
    return grid.tile, -grid.rows


def _pack(nodes: Sequence[_Node], columns: int) -> dict[int | None, tuple[int, int]]:
    """Lanes end to end in reading order, wrapped at ``columns``: compact, tags do the rest."""
    ordered = sorted(nodes, key=lambda n: (n.lane, n.depth))
    return {n.key: divmod(index, columns) for index, n in enumerate(ordered)}


def _fold(nodes: Sequence[_Node], columns: int) -> dict[int | None, tuple[int, int]]:
    """Wrap each lane at ``columns`` like text, lanes one below the other."""
    spans: dict[int, tuple[int, int]] = {}
    for n in nodes:
        low, high = spans.get(n.lane, (n.depth, n.depth))
        spans[n.lane] = (min(low, n.depth), max(high, n.depth))
    first_row: dict[int, int] = {}
    row = 0
    for lane in sorted(spans):
        low, high = spans[lane]
        first_row[lane] = row
        row += high // columns - low // columns + 1
    return {n.key: (first_row[n.lane] + n.depth // columns - spans[n.lane][0] // columns,
                    n.depth % columns) for n in nodes}


def _tile_size(rows: int, columns: int) -> tuple[int, bool]:
    """The thumbnail side for a grid, and whether prompts fit under the labels."""
    by_width = (MAX_WIDTH - 2 * MARGIN - (columns - 1) * GUTTER) // columns

    def fitted(*, captions: bool) -> int:
        label = _label_height(captions=captions)
        by_height = (TARGET_HEIGHT - 2 * MARGIN - rows * label - (rows - 1) * ROW_GAP) // rows
        return max(MIN_TILE, min(MAX_TILE, by_width, by_height))

    with_captions = fitted(captions=True)
    if with_captions >= CAPTION_MIN_TILE:
        return with_captions, True
    return fitted(captions=False), False


def _label_height(*, captions: bool) -> int:
    return LABEL_LINE + (CAPTION_LINE if captions else 0)


# --------------------------------------------------------------------------- drawing


@dataclass
class _Canvas:
    """The sheet being drawn and where each version's tile sits on it."""

    grid: _Grid
    sheet: Image.Image
    draw: ImageDraw.ImageDraw
    width: int

    @classmethod
    def for_grid(cls, grid: _Grid) -> _Canvas:
        label_height = _label_height(captions=grid.captions)
        width = grid.columns * grid.tile + (grid.columns - 1) * GUTTER + 2 * MARGIN
        height = (2 * MARGIN + grid.rows * (grid.tile + label_height)
                  + (grid.rows - 1) * ROW_GAP)
        sheet = Image.new("RGB", (width, height), BACKGROUND)
        return cls(grid, sheet, ImageDraw.Draw(sheet), width)

    def box_of(self, key: int | None) -> Box:
        tile = self.grid.tile
        row, column = self.grid.cells[key]
        left = MARGIN + column * (tile + GUTTER)
        top = MARGIN + row * (tile + _label_height(captions=self.grid.captions) + ROW_GAP)
        return left, top, left + tile, top + tile


def _draw(nodes: Sequence[_Node], grid: _Grid, load_image: ImageLoader) -> ContactSheet:
    canvas = _Canvas.for_grid(grid)
    links, stub_colours, tagged = _connect(nodes, canvas)
    _draw_links(canvas.draw, links, stub_colours)
    label_font = _font(max(MIN_LABEL_SIZE, min(LABEL_SIZE, grid.tile // 3)))
    caption_font = _font(CAPTION_SIZE)
    tiles = [_draw_tile(canvas, node, load_image, label_font, caption_font,
                        parent_tag=tagged.get(node.key))
             for node in nodes]
    out = io.BytesIO()
    canvas.sheet.save(out, "PNG", optimize=False)
    return ContactSheet(out.getvalue(), canvas.width, canvas.sheet.height, tuple(tiles),
                        tuple(links), grid.arrangement)


def _connect(nodes: Sequence[_Node], canvas: _Canvas
             ) -> tuple[list[Link], list[Rgb], dict[int | None, str]]:
    """Every version's link from its parent, the colour of the stub leaving each parent,
    and the versions whose parent is named in a tag instead of an arrow."""
    grid = canvas.grid
    by_key = {n.key: n for n in nodes}
    links: list[Link] = []
    stub_colours: list[Rgb] = []
    tagged: dict[int | None, str] = {}
    for node in nodes:
        if not node.has_parent:
            continue
        colour = LANE_COLOURS[node.lane % len(LANE_COLOURS)]
        parent = by_key.get(node.parent)
        if parent is None:  # left off the sheet: named in a tag, like a wrapped row
            label = f"v{node.parent}"  # (the origin is drawn whenever a version grows from it)
            tagged[node.key] = label
            links.append(Link(label, node.label, LinkKind.TAGGED, (), colour))
            stub_colours.append(colour)
            continue
        kind, points = _route(grid.cells[parent.key], grid.cells[node.key],
                              canvas.box_of(parent.key), canvas.box_of(node.key),
                              elbows=grid.arrangement in ELBOW_ARRANGEMENTS)
        if kind is LinkKind.TAGGED:
            tagged[node.key] = parent.label
        links.append(Link(parent.label, node.label, kind, points, colour))
        stub_colours.append(LANE_COLOURS[parent.lane % len(LANE_COLOURS)])
    return links, stub_colours, tagged


def _draw_links(draw: ImageDraw.ImageDraw, links: Sequence[Link],
                stub_colours: Sequence[Rgb]) -> None:
    """Longest elbows first, so where branches share a gutter the nearest stays on top; the
    stub leaving a parent is drawn in the parent's colour, like the arrow it shares."""
    for link in sorted(links, key=lambda link: -_drop(link)):
        if len(link.points) > 2:
            draw.line(link.points[1:], fill=link.colour, width=LINE_WIDTH, joint="curve")
    for link, parent_colour in zip(links, stub_colours, strict=True):
        if link.points:
            draw.line(link.points[:2], fill=parent_colour, width=LINE_WIDTH)
            _arrowhead(draw, link.points[-1], link.colour)


def _draw_tile(canvas: _Canvas, node: _Node, load_image: ImageLoader, label_font: _Font,
               caption_font: _Font, *, parent_tag: str | None) -> Tile:
    """One version: its thumbnail framed, its label, a tag naming a far parent, a caption."""
    draw, tile = canvas.draw, canvas.grid.tile
    box = canvas.box_of(node.key)
    canvas.sheet.paste(_thumbnail(node.images, tile, load_image, node.region), box[:2])
    frame = CURRENT_FRAME if node.is_current else FRAME
    draw.rectangle((box[0] - frame, box[1] - frame, box[2] + frame - 1, box[3] + frame - 1),
                   outline=CURRENT_COLOUR if node.is_current else FRAME_COLOUR, width=frame)
    hidden = len(node.images) - _shown_count(len(node.images), tile)
    if hidden > 0:
        _badge(draw, box, f"+{hidden}", caption_font)
    label_right = _label(draw, box, node.label, label_font, current=node.is_current)
    if parent_tag is not None:
        tag_left = label_right + 12
        room = min(canvas.width - MARGIN // 2, box[2] + GUTTER - 8) - tag_left - 14
        parent_tag = _shorten(caption_font, parent_tag, room)
        _parent_tag(draw, (tag_left, box[3] + 10), parent_tag, caption_font,
                    LANE_COLOURS[node.lane % len(LANE_COLOURS)])
    caption = None
    prompt = _visible(node.prompt)
    if canvas.grid.captions and prompt and _drawable(caption_font, prompt):
        caption = _shorten(caption_font, prompt, tile)
        draw.text((box[0], box[3] + LABEL_LINE + 4), caption, font=caption_font,
                  fill=CAPTION_COLOUR)
    row, column = canvas.grid.cells[node.key]
    return Tile(node.label, node.key, box, row, column, node.is_current, caption,
                parent_tag, node.region is not None)


def _route(parent_cell: tuple[int, int], child_cell: tuple[int, int], parent: Box, child: Box,
           *, elbows: bool) -> tuple[LinkKind, tuple[Point, ...]]:
    """The connector's path: straight, an elbow down the gutter, or none (a tag instead).

    Elbows are drawn only where each lane keeps to rows of its own; in a wrapped sheet
    they would run across other rows' arrows, so a tag names the parent instead.
    """
    (parent_row, parent_column), (child_row, child_column) = parent_cell, child_cell
    child_mid = (child[1] + child[3]) // 2
    end = (child[0] - CURRENT_FRAME - 2, child_mid)
    start = (parent[2] + CURRENT_FRAME + 2, (parent[1] + parent[3]) // 2)
    if child_column == parent_column + 1 and child_row == parent_row:
        return LinkKind.STRAIGHT, (start, end)
    if elbows and child_column == parent_column + 1 and child_row > parent_row:
        gutter_x = parent[2] + GUTTER // 2
        return LinkKind.ELBOW, (start, (gutter_x, start[1]), (gutter_x, child_mid), end)
    # No stub: in a packed row it would look like an arrow from the left neighbour.
    return LinkKind.TAGGED, ()


def _drop(link: Link) -> int:
    """How far a connector runs down: 0 for a straight arrow."""
    return max((y for _, y in link.points), default=0) - min((y for _, y in link.points),
                                                              default=0)


def _arrowhead(draw: ImageDraw.ImageDraw, tip: Point, colour: Rgb) -> None:
    x, y = tip
    draw.polygon(((x, y), (x - 12, y - 8), (x - 12, y + 8)), fill=colour)


def _label(draw: ImageDraw.ImageDraw, box: Box, text: str, font: _Font, *, current: bool
           ) -> int:
    """Draw the version label under the tile; the current one on an orange pill."""
    x, y = box[0], box[3] + 8
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    if current:
        draw.rounded_rectangle((left - 8, top - 5, right + 8, bottom + 5), radius=10,
                               fill=CURRENT_COLOUR)
        draw.text((x, y), text, font=font, fill=ON_CURRENT)
        return int(right) + 8
    draw.text((x, y), text, font=font, fill=TEXT_COLOUR)
    return int(right)


def _parent_tag(draw: ImageDraw.ImageDraw, at: Point, parent: str, font: _Font,
                colour: Rgb) -> None:
    """A small "◂ v7" after a label whose parent is not drawn next to it."""
    x, y = at
    mid = y + CAPTION_SIZE // 2 + 3
    draw.polygon(((x, mid), (x + 10, mid - 7), (x + 10, mid + 7)), fill=colour)
    draw.text((x + 14, y + 2), parent, font=font, fill=colour)


def _badge(draw: ImageDraw.ImageDraw, box: Box, text: str, font: _Font) -> None:
    """How many more pictures the version holds than the one shown."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 12, bottom - top + 10
    x0, y0 = box[2] - w - 4, box[1] + 4
    draw.rounded_rectangle((x0, y0, x0 + w, y0 + h), radius=6, fill=(0, 0, 0))
    draw.text((x0 + 6 - left, y0 + 5 - top), text, font=font, fill=(255, 255, 255))


def _shown_count(images: int, side: int) -> int:
    """How many pictures a tile shows: up to four in a 2×2 mosaic when the tile is big."""
    return min(images, 4) if side >= 2 * MIN_TILE else min(images, 1)


def _thumbnail(images: Sequence[ImageRef], side: int, load_image: ImageLoader,
               region: bytes | None = None) -> Image.Image:
    """The tile's pictures fitted into a square (several: a mosaic, e.g. an album), with
    the edge of ``region`` (a mask PNG) drawn on a single picture."""
    square = Image.new("RGB", (side, side), TILE_BACKGROUND)
    shown = images[: _shown_count(len(images), side)]
    if not shown:
        return _placeholder(square)
    per_row = 1 if len(shown) == 1 else 2
    cell = side // per_row
    for index, ref in enumerate(shown):
        picture = _load(ref, cell, load_image)
        if picture is None:
            picture = _placeholder(Image.new("RGB", (cell, cell), TILE_BACKGROUND))
        elif region is not None and len(shown) == 1:
            picture = outlined(picture, region)
        x = (index % per_row) * cell + (cell - picture.width) // 2
        y = (index // per_row) * cell + (cell - picture.height) // 2
        square.paste(picture, (x, y))
    return square


def outlined(picture: Image.Image, region: bytes) -> Image.Image:
    """``picture`` with the edge of the marked area (a mask PNG of any size) drawn on it;
    unchanged when the mask does not decode."""
    try:
        with Image.open(io.BytesIO(region)) as opened:
            mask = opened.convert("L").resize(picture.size, Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, EOFError):
        return picture
    mask = mask.point(lambda value: 255 if value > 127 else 0)
    edge = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(5)), mask)
    shown = picture.convert("RGB")
    shown.paste(REGION_COLOUR, mask=edge)
    return shown


def _load(ref: ImageRef, side: int, load_image: ImageLoader) -> Image.Image | None:
    """A stored picture fitted into ``side``; None when it is gone or unreadable."""
    try:
        data = load_image(ref.sha256)
    except LookupError:
        return None
    return fitted_picture(data, side)


def fitted_picture(data: bytes, side: int) -> Image.Image | None:
    """Image bytes decoded to RGB within a ``side`` square, transparency on the tile colour.

    None for bytes that do not decode: a damaged picture costs its tile, not the sheet.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.draft("RGB", (side, side))  # JPEG decodes at reduced size: much faster
            opened.thumbnail((side, side))
            picture = opened.convert("RGBA")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None
    flat = Image.new("RGB", picture.size, TILE_BACKGROUND)
    flat.paste(picture, mask=picture.getchannel("A"))
    return flat


def _placeholder(square: Image.Image) -> Image.Image:
    """A crossed-out square: there was a picture here, and it is gone."""
    draw = ImageDraw.Draw(square)
    w, h = square.size
    draw.line(((w // 4, h // 4), (3 * w // 4, 3 * h // 4)), fill=FRAME_COLOUR, width=LINE_WIDTH)
    draw.line(((3 * w // 4, h // 4), (w // 4, 3 * h // 4)), fill=FRAME_COLOUR, width=LINE_WIDTH)
    return square


# --------------------------------------------------------------------------- text


@cache
def _font(size: int) -> _Font:
    """Pillow's bundled font (Aileron): no system fonts, so every server draws the same."""
    return ImageFont.load_default(size=size)


@cache
def _missing_glyph(font: _Font) -> bytes:
    return bytes(font.getmask("\uffff"))


def _visible(text: str) -> str:
    """``text`` on one line without invisible formatting characters (zero-width spaces…)."""
    words = ("".join(c for c in word if unicodedata.category(c) not in ("Cc", "Cf"))
             for word in text.split())
    return " ".join(word for word in words if word)


def _drawable(font: _Font, text: str) -> bool:
    """Whether every character of ``text`` has a real glyph (not the font's empty box)."""
    missing = _missing_glyph(font)
    for char in set(text):
        if char.isspace():
            continue
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):  # no glyph to draw
            return False
        if _glyph(font, char) == missing:
            return False
    return True


@lru_cache(maxsize=4096)
def _glyph(font: _Font, char: str) -> bytes:
    return bytes(font.getmask(char))


def _shorten(font: _Font, text: str, width: int) -> str:
    """``text`` cut to fit ``width`` pixels, with an ellipsis when cut."""
    if font.getlength(text) <= width:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle].rstrip() + "…") <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "…"
