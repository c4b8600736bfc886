#!/usr/bin/env python3
"""Drives `sdw attach RUN --panel preview` in a pseudo-terminal and checks
the picture the workbench draws against the expected one: the PNG in
RUN/samples resampled by exact area averaging in double precision (numpy).

mode sixel: the terminal claims sixel support (DA1 attribute 4) and a cell
size (XTWINOPS); the sixel image in the raw output is decoded with the small
decoder below (written from the VT330/340 sixel description, not from
libsixel).
mode truecolor: no sixel, COLORTERM=truecolor; the half-block cells
(U+2580, foreground = upper pixel, background = lower pixel) in the raw
output are read back into pixels.

usage: tui_sixel.py SDW WORKDIR [sixel|truecolor]
"""
import fcntl, os, pty, re, select, signal, struct, sys, termios, time, zlib

import numpy as np

sdw, work = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "sixel"
ROWS, COLS, CELL_W, CELL_H = 30, 100, 8, 12
run = os.path.join(work, "run")
os.makedirs(os.path.join(run, "samples"), exist_ok=True)


def png(path, img):
    h, w, _ = img.shape
    raw = b"".join(b"\0" + img[y].tobytes() for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


# Four flat quadrants in 20 % steps (exact in a sixel palette) plus a bar:
# however it is scaled, only the seams blend, so it stays below 256 colours
# and the sixel path must reproduce it without quantisation.
SRC = np.zeros((240, 240, 3), np.uint8)
SRC[:120, :120] = (255, 0, 0)
SRC[:120, 120:] = (0, 204, 51)
SRC[120:, :120] = (51, 102, 255)
SRC[120:, 120:] = (255, 255, 153)
SRC[100:140, 30:210] = (0, 0, 0)
if mode == "truecolor":
    # no palette limit here: a vertical ramp makes upper and lower halves
    # of every cell differ, so swapped halves cannot pass
    SRC[150:, 150:, 1] = np.arange(150, 240, dtype=np.uint8)[:, None]
png(os.path.join(run, "samples", "step-100.png"), SRC)
with open(os.path.join(run, "job.json"), "w") as f:
    f.write('{"format": "sdw-job/1", "pid": 0, "state": "finished", "step": 100}\n')

pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, COLS * CELL_W, ROWS * CELL_H))
    env = dict(os.environ, TERM="xterm-256color", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    env.pop("NO_COLOR", None)
    env.pop("COLORTERM", None)
    if mode == "truecolor":
        env["COLORTERM"] = "truecolor"
    os.execve(sdw, [sdw, "attach", "--panel", "preview", run], env)

out = b""
answered = False
deadline = time.time() + 20
dcs = None
while time.time() < deadline and dcs is None:
    r, _, _ = select.select([fd], [], [], 0.2)
    if not r:
        continue
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
    if not answered and b"\x1b[c" in out:
        # a VT340-like terminal: cell 8x12, sixel in DA1
        os.write(fd, b"\x1b[6;%d;%dt\x1b[4;%d;%dt\x1b[?63;1;2;%s22c"
                 % (CELL_H, CELL_W, ROWS * CELL_H, COLS * CELL_W,
                    b"4;" if mode == "sixel" else b""))
        answered = True
    if mode == "sixel":
        m = re.search(rb"\x1bP[0-9;]*q(.*?)\x1b\\", out, re.S)
    else:
        m = re.search(rb"\x1b7((?:\x1b\[\d+;\d+H(?:\x1b\[[0-9;]*m|\xe2\x96\x80)+)+)\x1b\[0m\x1b8",
                      out)
    if m:
        dcs = m

os.write(fd, b"q")
end = time.time() + 5
while time.time() < end:
    try:
        wpid, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        break
    if wpid:
        break
    try:
        select.select([fd], [], [], 0.1)
        os.read(fd, 65536)
    except OSError:
        pass
else:
    os.kill(pid, signal.SIGKILL)
    sys.exit("FAIL: the workbench did not quit on q")

if not answered:
    sys.exit("FAIL: the workbench never sent the DA1 query; its output ended with %r" % out[-400:])
if dcs is None:
    sys.exit("FAIL: no %s image in %d bytes of output" % (mode, len(out)))

if mode == "sixel":
    # The image must be placed with a cursor move right before it and the
    # cursor saved/restored around it (so curses' idea of the screen holds).
    before = out[:dcs.start()]
    cup = re.search(rb"\x1b7\x1b\[(\d+);(\d+)H$", before)
    if not cup:
        sys.exit("FAIL: the sixel image is not preceded by DECSC + CUP")
    if not out[dcs.end():].startswith(b"\x1b8"):
        sys.exit("FAIL: the sixel image is not followed by DECRC")
    top, left = int(cup.group(1)), int(cup.group(2))
    cell_w, cell_h = CELL_W, CELL_H
else:
    cup = re.match(rb"\x1b\[(\d+);(\d+)H", dcs.group(1))
    top, left = int(cup.group(1)), int(cup.group(2))
    cell_w, cell_h = 1, 2  # one half block = one pixel wide, two tall


def decode_sixel(body):
    """Returns an RGB array. Colours: '#n;2;r;g;b' (percent) defines,
    '#n' selects; '!n' repeats; '$' returns; '-' goes to the next band;
    '"a;b;w;h' gives the raster size."""
    pal, pixels = {}, {}
    x = y = 0
    cur = 0
    w = h = None
    i, n = 0, len(body)
    def number():
        nonlocal i
        j = i
        while i < n and body[i:i + 1].isdigit():
            i += 1
        return int(body[j:i] or b"0")
    while i < n:
        c = body[i:i + 1]
        if c == b'"':
            i += 1
            vals = [number()]
            while body[i:i + 1] == b";":
                i += 1
                vals.append(number())
            if len(vals) >= 4:
                w, h = vals[2], vals[3]
        elif c == b"#":
            i += 1
            vals = [number()]
            while body[i:i + 1] == b";":
                i += 1
                vals.append(number())
            cur = vals[0]
            if len(vals) >= 5:
                if vals[1] != 2:
                    raise ValueError("HLS colour not expected")
                pal[cur] = tuple(int(v * 255 / 100 + 0.5) for v in vals[2:5])
        elif c == b"!":
            i += 1
            count = number()
            ch = body[i]
            i += 1
            for _ in range(count):
                bits = ch - 63
                for k in range(6):
                    if bits >> k & 1:
                        pixels[(x, y + k)] = pal[cur]
                x += 1
        elif c == b"$":
            i += 1
            x = 0
        elif c == b"-":
            i += 1
            x, y = 0, y + 6
        elif 63 <= body[i] <= 126:
            bits = body[i] - 63
            for k in range(6):
                if bits >> k & 1:
                    pixels[(x, y + k)] = pal[cur]
            x += 1
            i += 1
        else:
            i += 1  # newlines are allowed and ignored
    if w is None:
        raise ValueError("no raster attributes")
    img = np.zeros((h, w, 3), np.int32)
    missing = 0
    for yy in range(h):
        for xx in range(w):
            p = pixels.get((xx, yy))
            if p is None:
                missing += 1
            else:
                img[yy, xx] = p
    if missing:
        raise ValueError("%d pixels left unpainted" % missing)
    return img


def decode_blocks(seq):
    """Pixels from CUP-positioned rows of SGR 38;2 / 48;2 / 49 and U+2580."""
    cells = {}
    fg = bg = None
    row = col = 0
    for m in re.finditer(rb"\x1b\[(\d+);(\d+)H|\x1b\[([0-9;]*)m|\xe2\x96\x80", seq):
        if m.group(1):
            row, col = int(m.group(1)), int(m.group(2))
        elif m.group(3) is not None:
            p = [int(v) for v in m.group(3).split(b";")]
            k = 0
            while k < len(p):
                if p[k] in (38, 48) and p[k + 1] == 2:
                    if p[k] == 38:
                        fg = tuple(p[k + 2:k + 5])
                    else:
                        bg = tuple(p[k + 2:k + 5])
                    k += 5
                elif p[k] == 49:
                    bg = None
                    k += 1
                else:
                    raise ValueError("unexpected SGR %r" % m.group(0))
        else:
            cells[(row, col)] = (fg, bg)
            col += 1
    rows = sorted({r for r, _ in cells})
    cols = sorted({c for _, c in cells})
    if rows != list(range(rows[0], rows[-1] + 1)) or cols != list(range(cols[0], cols[-1] + 1)):
        raise ValueError("the cells do not form a rectangle")
    if len(cells) != len(rows) * len(cols):
        raise ValueError("the cells do not form a rectangle")
    last_has_bottom = all(cells[(rows[-1], c)][1] is not None for c in cols)
    h = 2 * len(rows) - (0 if last_has_bottom else 1)
    img = np.zeros((h, len(cols), 3), np.int32)
    for (r, c), (f, b) in cells.items():
        y, x = 2 * (r - rows[0]), c - cols[0]
        img[y, x] = f
        if y + 1 < h:
            img[y + 1, x] = b
    return img


got = decode_sixel(dcs.group(1)) if mode == "sixel" else decode_blocks(dcs.group(1))
h, w, _ = got.shape


def area_matrix(src, dst):
    """dst x src weights of the exact area average (rows sum to 1)."""
    m = np.zeros((dst, src))
    for o in range(dst):
        a, b = o * src / dst, (o + 1) * src / dst
        for s in range(int(np.floor(a)), min(src, int(np.ceil(b)))):
            m[o, s] = max(0.0, min(b, s + 1) - max(a, s))
    return m / (src / dst)


want = np.floor(np.einsum("ys,sxc,ux->yuc", area_matrix(240, h), SRC.astype(np.float64),
                          area_matrix(240, w)) + 0.5)
# tolerance: 1 level for a rounding tie (x.5 exactly) that the two double
# sums may break differently, plus (sixel only) 1 for the percent palette:
# round(100 v / 255) and back is within 1 of v
tol = 2 if mode == "sixel" else 1
err = np.abs(got - want).max()
# a square picture stays square on screen: sixel to a pixel, half blocks
# (CELL_W x CELL_H/2 screen pixels each) to one block
if mode == "sixel":
    square = abs(w - h) <= 1
else:
    square = abs(w * CELL_W - h * CELL_H / 2) <= CELL_W
if not square:
    sys.exit("FAIL: a square picture became %dx%d (%s)" % (w, h, mode))
if left - 1 + (w + cell_w - 1) // cell_w > COLS or top - 1 + (h + cell_h - 1) // cell_h > ROWS - 1:
    sys.exit("FAIL: the image at row %d col %d (%dx%d px) leaves the screen or reaches its last row"
             % (top, left, w, h))
if err > tol:
    sys.exit("FAIL: decoded %s image differs from the expected picture by %d levels" % (mode, err))
print("ok: %dx%d %s image at row %d col %d, max error %d" % (w, h, mode, top, left, err))
