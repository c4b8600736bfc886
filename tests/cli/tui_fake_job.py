#!/usr/bin/env python3
"""A stand-in for `sdw train` used by tests/cli/tui_tmux.sh when no real
trainer is built: it writes a run directory (config.ini, job.json,
metrics.jsonl, events.log, samples/, checkpoints/) the way the run-directory
contract says, and answers the control protocol on RUN/control.sock
(status, subscribe, pause, resume, checkpoint, sample, stop), with one
"training step" every 0.2 s while running.

usage: tui_fake_job.py RUN [--steps N]   (runs until stop or N steps)
"""
import json, os, socket, select, struct, sys, time, zlib

run = sys.argv[1]
total = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 100000
os.makedirs(os.path.join(run, "checkpoints"), exist_ok=True)
os.makedirs(os.path.join(run, "samples"), exist_ok=True)
host = socket.gethostname()
state = {"state": "running", "step": 0, "epoch": 0, "loss": 1.0, "lr": 1e-4, "ckpt": ""}


def atomic_write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def job():
    return {"format": "sdw-job/1", "pid": os.getpid(), "host": host, "state": state["state"],
            "step": state["step"], "epoch": state["epoch"], "total_steps": total,
            "loss": state["loss"], "lr": state["lr"], "img_per_s": 12.5,
            "eta_s": (total - state["step"]) * 0.2, "last_checkpoint": state["ckpt"],
            "error": "", "updated": time.time()}


def log(level, msg):
    with open(os.path.join(run, "events.log"), "a") as f:
        f.write(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f" {level} {msg}\n")
    broadcast({"event": "log", "level": level, "message": msg})


def png(path, w, h, rgb):
    raw = b"".join(b"\0" + b"".join(bytes(rgb(x, y)) for x in range(w)) for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


clients = {}  # socket -> [buffer, subscribed]


def send(c, obj):
    try:
        c.sendall((json.dumps(obj) + "\n").encode())
    except OSError:
        clients.pop(c, None)


def broadcast(ev):
    for c, (_, sub) in list(clients.items()):
        if sub:
            send(c, ev)


def set_state(s):
    state["state"] = s
    atomic_write(os.path.join(run, "job.json"), json.dumps(job()))
    broadcast({"event": "state", "state": s})


def handle(c, line):
    try:
        req = json.loads(line)
        cmd = req["cmd"]
    except Exception:
        return send(c, {"id": None, "ok": False, "error": "malformed request"})
    rid = req.get("id")
    if cmd == "status":
        return send(c, {"id": rid, "ok": True, "status": job()})
    if cmd == "subscribe":
        clients[c][1] = True
        return send(c, {"id": rid, "ok": True})
    if cmd == "pause":
        set_state("paused"); log("INFO", f"paused at step {state['step']}")
        return send(c, {"id": rid, "ok": True})
    if cmd == "resume":
        set_state("running"); log("INFO", f"resumed at step {state['step']}")
        return send(c, {"id": rid, "ok": True})
    if cmd == "checkpoint":
        p = f"checkpoints/step-{state['step']:08d}.safetensors"
        with open(os.path.join(run, p), "wb") as f:
            f.write(struct.pack("<Q", 2) + b"{}")
        atomic_write(os.path.join(run, "checkpoints", "latest"), p + "\n")
        state["ckpt"] = p
        log("INFO", f"checkpoint {p}")
        broadcast({"event": "checkpoint", "path": p})
        return send(c, {"id": rid, "ok": True, "path": p})
    if cmd == "sample":
        if not isinstance(req.get("prompt"), str):
            return send(c, {"id": rid, "ok": False, "error": "sample needs a prompt"})
        seed = int(req.get("seed", 1234))
        send(c, {"id": rid, "ok": True, "queued": True})
        p = f"samples/sample-step-{state['step']:08d}-{seed}.png"
        png(os.path.join(run, p), 64, 64, lambda x, y: (x * 4, y * 4, 128))
        log("INFO", f"sample {p}: {req['prompt']}")
        return broadcast({"event": "sample", "path": p, "prompt": req["prompt"]})
    if cmd == "stop":
        send(c, {"id": rid, "ok": True})
        set_state("stopping")
        state["stop"] = True
        return
    send(c, {"id": rid, "ok": False, "error": f"unknown cmd {cmd}"})


sock_path = os.path.join(run, "control.sock")
if os.path.exists(sock_path):
    os.unlink(sock_path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sock_path)
os.chmod(sock_path, 0o600)
srv.listen(16)
with open(os.path.join(run, "config.ini"), "w") as f:
    f.write("[model]\nmodel = seed-tiny\n[data]\ntrain_data = %s\n" % os.environ.get("TUI_DATA", ""))
set_state("running")
log("INFO", "training started (fake job for the workbench tests)")
log("WARN", "a warning line")
next_step = time.time()
while True:
    r, _, _ = select.select([srv] + list(clients), [], [], 0.05)
    for s in r:
        if s is srv:
            c, _ = srv.accept()
            clients[c] = [b"", False]
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            clients.pop(s, None)
            continue
        clients[s][0] += data
        while s in clients and b"\n" in clients[s][0]:
            line, clients[s][0] = clients[s][0].split(b"\n", 1)
            handle(s, line.decode())
    if state.get("stop"):
        break
    if state["state"] == "running" and time.time() >= next_step:
        next_step = time.time() + 0.2
        state["step"] += 1
        state["epoch"] = state["step"] // 50
        state["loss"] = 0.1 + 0.9 / (1 + 0.05 * state["step"]) + 0.05 * ((state["step"] * 7919) % 13) / 13
        state["lr"] = 1e-4 * min(1.0, state["step"] / 20)
        m = {"step": state["step"], "epoch": state["epoch"], "loss": state["loss"], "lr": state["lr"],
             "grad_norm": 1.0 + (state["step"] % 5) * 0.1, "img_per_s": 12.5, "step_ms": 200.0,
             "mem_mb": 100.0, "time": time.time()}
        with open(os.path.join(run, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(m) + "\n")
        broadcast(dict(m, event="metric"))
        if state["step"] % 5 == 0:
            atomic_write(os.path.join(run, "job.json"), json.dumps(job()))
        if state["step"] >= total:
            break
state["state"] = "stopped" if state.get("stop") else "finished"
atomic_write(os.path.join(run, "job.json"), json.dumps(job()))
log("INFO", "job " + state["state"])
srv.close()
os.unlink(sock_path)
