#!/usr/bin/env python3
"""Drives `sdw attach RUN --panel preview` in a pseudo-terminal that claims
sixel support (DA1 attribute 4) and a cell size (XTWINOPS), captures the
raw bytes the workbench writes, and decodes the sixel image in them with
the small decoder below (written from the VT330/340 sixel description, not
from libsixel), then compares it with the expected picture: the PNG in
RUN/samples resampled by exact area averaging in double precision (numpy).

usage: tui_sixel.py SDW WORKDIR
"""
import fcntl, os, pty, re, select, signal, struct, sys, termios, time, zlib

import numpy as np

sdw, work = sys.argv[1], sys.argv[2]
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
# however it is scaled, only the seams blend, so it stays far below 256
# colours and the sixel path must reproduce it without quantisation.
SRC = np.zeros((240, 240, 3), np.uint8)
SRC[:120, :120] = (255, 0, 0)
SRC[:120, 120:] = (0, 204, 51)
SRC[120:, :120] = (51, 102, 255)
SRC[120:, 120:] = (255, 255, 153)
SRC[100:140, 30:210] = (0, 0, 0)
png(os.path.join(run, "samples", "step-100.png"), SRC)
with open(os.path.join(run, "job.json"), "w") as f:
    f.write('{"format": "sdw-job/1", "pid": 0, "state": "finished", "step": 100}\n')

pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, COLS * CELL_W, ROWS * CELL_H))
    env = dict(os.environ, TERM="xterm-256color", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    env.pop("NO_COLOR", None)
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
        os.write(fd, b"\x1b[6;%d;%dt\x1b[4;%d;%dt\x1b[?63;1;2;4;22c"
                 % (CELL_H, CELL_W, ROWS * CELL_H, COLS * CELL_W))
        answered = True
    m = re.search(rb"\x1bP[0-9;]*q(.*?)\x1b\\", out, re.S)
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
    sys.exit("FAIL: no sixel image in %d bytes of output" % len(out))

# The image must be placed with a cursor move right before it and the
# cursor saved/restored around it (so curses' idea of the screen holds).
before = out[:dcs.start()]
cup = re.search(rb"\x1b7\x1b\[(\d+);(\d+)H$", before)
if not cup:
    sys.exit("FAIL: the sixel image is not preceded by DECSC + CUP")
if not out[dcs.end():].startswith(b"\x1b8"):
    sys.exit("FAIL: the sixel image is not followed by DECRC")
top, left = int(cup.group(1)), int(cup.group(2))


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


got = decode_sixel(dcs.group(1))
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
# tolerance: 1 level for the percent palette (round(100 v / 255) and back is
# within 1 of v) plus 1 for a rounding tie (x.5 exactly) that the two double
# sums may break differently
err = np.abs(got - want).max()
if abs(w - h) > 1:
    sys.exit("FAIL: a square picture became %dx%d" % (w, h))
if w > COLS * CELL_W or h > ROWS * CELL_H:
    sys.exit("FAIL: %dx%d does not fit the screen" % (w, h))
if left - 1 + (w + CELL_W - 1) // CELL_W > COLS or top - 1 + (h + CELL_H - 1) // CELL_H > ROWS - 1:
    sys.exit("FAIL: the image at row %d col %d (%dx%d px) leaves the screen or reaches its last row"
             % (top, left, w, h))
if err > 2:
    sys.exit("FAIL: decoded sixel differs from the expected picture by %d levels" % err)
print("ok: %dx%d sixel at row %d col %d, max error %d" % (w, h, top, left, err))
