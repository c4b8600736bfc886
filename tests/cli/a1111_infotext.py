"""AUTOMATIC1111's infotext reader, for tests: what the web UI's "PNG Info" and
"Send to txt2img" do with the "parameters" text of a PNG.

parse_generation_parameters follows modules/infotext_utils.py of
AUTOMATIC1111/stable-diffusion-webui (v1.8+) step by step, minus the parts that
need the UI's settings (styles, skip lists) and the defaults it fills in for
missing keys:
  - the text is stripped and split into lines; the last line holds the
    parameters only when the parameter regex finds at least 3 pairs in it,
    otherwise it is one more prompt line;
  - every other line is stripped; from the first line that starts with
    "Negative prompt:" on (that prefix removed), lines belong to the negative
    prompt, before it to the prompt (joined with newlines);
  - each "Key: value" pair of the last line: a value in double quotes is
    unquoted with json.loads; a value of the form "<int>x<int>" becomes
    "Key-1" and "Key-2" (Size -> Size-1 = width, Size-2 = height).

read_png decodes an 8-bit RGB PNG (no interlace) and its tEXt / iTXt chunks
with the standard library only: (width, height, pixels bytes, {key: text}).

Run as a script: python3 a1111_infotext.py FILE.png prints the parsed fields as
JSON.
"""
import json
import re
import struct
import sys
import zlib

RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")


def unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def parse_generation_parameters(x):
    res = {}
    prompt = ""
    negative_prompt = ""
    done_with_prompt = False
    *lines, lastline = x.strip().split("\n")
    if len(RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt
    for k, v in RE_PARAM.findall(lastline):
        if v and v[0] == '"' and v[-1] == '"':
            v = unquote(v)
        m = RE_IMAGESIZE.match(v)
        if m is not None:
            res[k + "-1"] = m.group(1)
            res[k + "-2"] = m.group(2)
        else:
            res[k] = v
    return res


def read_png(path):
    with open(path, "rb") as f:
        b = f.read()
    if b[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(path + ": not a PNG")
    pos, idat, texts, head = 8, b"", {}, None
    while pos < len(b):
        n, = struct.unpack(">I", b[pos:pos + 4])
        kind, data = b[pos + 4:pos + 8], b[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + data) != struct.unpack(">I", b[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError("%s: bad CRC in %r" % (path, kind))
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat += data
        elif kind == b"tEXt":
            k, v = data.split(b"\0", 1)
            texts[k.decode("latin-1")] = v.decode("latin-1")
        elif kind == b"iTXt":
            k, rest = data.split(b"\0", 1)
            compressed, rest = rest[0], rest[2:]
            _lang, rest = rest.split(b"\0", 1)
            _translated, v = rest.split(b"\0", 1)
            texts[k.decode("latin-1")] = (zlib.decompress(v) if compressed else v).decode("utf-8")
        pos += 12 + n
    w, h, depth, color, _, _, interlace = head
    if depth != 8 or color != 2 or interlace != 0:
        raise ValueError("%s: only 8-bit RGB without interlace is read here" % path)
    raw, bpp, stride = zlib.decompress(idat), 3, w * 3
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + up) // 2) & 255
            elif kind == 4:
                p = a + up - c
                pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
        out += line
        prev = line
    return w, h, bytes(out), texts


if __name__ == "__main__":
    _, _, _, t = read_png(sys.argv[1])
    print(json.dumps(parse_generation_parameters(t["parameters"]), ensure_ascii=False, indent=1))
