#!/usr/bin/env python3
"""Checks the Kubernetes manifests of a distributed run (deploy/kubernetes/) without a cluster.

Usage:
    scripts/check-kubernetes.py [DIR] [--kubernetes-version V]... [--no-kubectl]

DIR (default deploy/kubernetes) holds a kustomization.yaml whose `resources` are YAML files in
DIR. Each document of those files is validated against the Kubernetes API schema of each
version V (default: OLDEST_VERSION and the newest kubernetes-validate knows) with the
PyPI package kubernetes-validate, strictly (unknown fields are errors). Then the run's own
rules, which the schema cannot express, are checked:

- the worker Job is Indexed, with parallelism = completions = the coordinator's --workers, and
  backoffLimit 0;
- the Service selects the coordinator's pod, and its targetPort is the coordinator's --port,
  and the workers' --coordinator names the Service and its port;
- the coordinator binds beyond loopback and both sides take ALPHAPULSE_TOKEN from a Secret
  that the files define;
- every container's resource requests equal its limits, with whole CPUs (Guaranteed QoS);
- the workers' /dev/shm is a memory-backed emptyDir with a sizeLimit below the memory limit;
- both Jobs have a ttlSecondsAfterFinished.

The files are read one by one, which is faithful only while kustomization.yaml transforms
nothing: any key but `resources` is refused. Where kubectl is installed (and --no-kubectl is
not given), `kubectl kustomize DIR` must render the same objects.

Prints one line per problem and exits 1, or a summary and exits 0. When kubernetes-validate
(or PyYAML) is not installed it prints `SKIPPED: ...` for what it cannot check and exits 0,
unless the environment has CI=true: then a missing package is an error (exit 1).
Exit status 2: DIR or its kustomization.yaml cannot be read, or a version has no schema.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from fractions import Fraction

try:
    import yaml
except ImportError:  # reported in main()
    yaml = None

try:
    import kubernetes_validate
except ImportError:  # reported in main()
    kubernetes_validate = None

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DIR = os.path.join(os.path.dirname(HERE), "deploy", "kubernetes")

# The oldest version the manifests are written for (Indexed Jobs, the static CPU manager and
# memory-backed emptyDirs sized by sizeLimit are all on by default there), and the newest that
# kubernetes-validate knows, filled in at run time.
OLDEST_VERSION = "1.26"

# The coordinator's defaults (load-tester -h), for flags the manifests leave out.
DEFAULT_PORT = 8080
DEFAULT_WORKERS = 1
DEFAULT_BIND = "127.0.0.1"

# Keys of a kustomization.yaml that transform nothing.
PLAIN_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources"}


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


class Problems:
    """The problems found, one line each."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, what: str) -> None:
        line = f"{where}: {what}"
        if line not in self.lines:
            self.lines.append(line)


class Doc:
    """One document of a manifest file."""

    def __init__(self, path: str, data: dict) -> None:
        self.path = path
        self.data = data

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "?"))

    @property
    def name(self) -> str:
        meta = obj(self.data.get("metadata"))
        return str(meta.get("name", "?")) if isinstance(meta, dict) else "?"

    def where(self) -> str:
        return f"{shown(self.path)}: {self.kind}/{self.name}"


def shown(path: str) -> str:
    """`path` relative to the working directory when it is inside it, else as it is."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


# --- quantities -------------------------------------------------------------------------------

_SUFFIXES = {
    "": Fraction(1), "m": Fraction(1, 1000), "k": Fraction(10**3), "M": Fraction(10**6),
    "G": Fraction(10**9), "T": Fraction(10**12), "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$")


def quantity(value) -> Fraction | None:
    """A Kubernetes quantity ("500m", "1Gi", 2, "1e3") as an exact number, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    m = _QUANTITY.match(str(value).strip())
    if not m:
        return None
    number = Fraction(m.group(1))
    if m.group(2) is not None:
        return number * Fraction(10) ** int(m.group(2))
    return number * _SUFFIXES[m.group(3) or ""]


# --- reading the files ------------------------------------------------------------------------


def load_kustomization(directory: str) -> tuple[dict | None, str | None]:
    path = os.path.join(directory, "kustomization.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        return None, f"{path}: cannot be read: {e.strerror}"
    except yaml.YAMLError as e:
        return None, f"{path}: not YAML: {e}"
    if not isinstance(data, dict):
        return None, f"{path}: not a kustomization (a mapping is expected)"
    return data, None


def load_documents(directory: str, kustomization: dict, problems: Problems) -> list[Doc]:
    where = shown(os.path.join(directory, "kustomization.yaml"))
    extra = sorted(set(kustomization) - PLAIN_KUSTOMIZATION_KEYS)
    if extra:
        problems.add(where, f"{', '.join(extra)}: only `resources` is allowed, so that the files "
                            "validated here are what kubectl applies")
    resources = kustomization.get("resources")
    if not isinstance(resources, list) or not resources:
        problems.add(where, "`resources` lists no file")
        return []
    docs = []
    for entry in resources:
        path = os.path.normpath(os.path.join(directory, str(entry)))
        if not os.path.isfile(path):
            problems.add(where, f"resource {entry}: not a file in {shown(directory)}")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                items = list(yaml.safe_load_all(f))
        except (OSError, UnicodeDecodeError) as e:
            problems.add(shown(path), f"cannot be read: {e}")
            continue
        except yaml.YAMLError as e:
            problems.add(shown(path), f"not YAML: {' '.join(str(e).split())}")
            continue
        for item in items:
            if item is None:
                continue
            if not isinstance(item, dict) or "apiVersion" not in item or "kind" not in item:
                problems.add(shown(path), "a document without apiVersion and kind")
                continue
            docs.append(Doc(path, item))
    return docs


def compare_with_kubectl(directory: str, docs: list[Doc], problems: Problems) -> str | None:
    """Checks that `kubectl kustomize` renders exactly `docs`; returns a note for the summary."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "kubectl not installed: the files were read one by one"
    try:
        out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True,
                             timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        problems.add(shown(directory), f"kubectl kustomize did not run: {e}")
        return None
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or ["(no message)"])[0]
        problems.add(shown(directory), f"kubectl kustomize failed: {first}")
        return None
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    key = lambda d: (str(d.get("kind")), str(obj(d.get("metadata")).get("name")))  # noqa: E731
    ours = sorted((d.data for d in docs), key=key)
    theirs = sorted(rendered, key=key)
    if ours != theirs:
        names = lambda ds: ", ".join("%s/%s" % key(d) for d in ds)  # noqa: E731
        problems.add(shown(directory),
                     "kubectl kustomize renders other objects than the files hold "
                     f"(rendered: {names(theirs)}; files: {names(ours)}): "
                     "kustomization.yaml must not transform them")
        return None
    return "kubectl kustomize renders the same objects"


# --- the schema -------------------------------------------------------------------------------


def major_minor(version: str) -> str:
    return ".".join(str(version).lstrip("v").split(".")[:2])


def validate_schema(docs: list[Doc], versions: list[str], problems: Problems) -> None:
    """kubernetes-validate reports the first error of a document; one line per error, naming
    every version whose schema it breaks."""
    for doc in docs:
        found: dict[str, list[str]] = {}
        for version in versions:
            try:
                kubernetes_validate.validate(doc.data, version, strict=True)
                continue
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top level)"
                text = f"{path}: {' '.join(str(e.message).split())}"
            except kubernetes_validate.SchemaNotFoundError as e:
                text = e.message
            except Exception as e:  # an unsupported version, an unreadable schema
                text = getattr(e, "message", None) or str(e) or type(e).__name__
            found.setdefault(text, []).append(major_minor(version))
        for text, where in found.items():
            problems.add(doc.where(), f"{text} (Kubernetes {', '.join(where)})")


# --- the run's own rules ----------------------------------------------------------------------


def obj(value) -> dict:
    """`value` when it is a mapping, else an empty one: a document of the wrong shape is the
    schema's to report, and must not stop the other checks."""
    return value if isinstance(value, dict) else {}


def pod_spec(doc: Doc) -> dict:
    return obj(obj(obj(doc.data.get("spec")).get("template")).get("spec"))


def pod_labels(doc: Doc) -> dict:
    return obj(obj(obj(obj(doc.data.get("spec")).get("template")).get("metadata")).get("labels"))


def containers(doc: Doc) -> list[dict]:
    spec = pod_spec(doc)
    found = []
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                found.append(c)
    return found


def argv(container: dict) -> list[str]:
    """The container's command line as words; a `sh -c SCRIPT` is split into the script's."""
    words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
    out = []
    for w in words:
        if "\n" in w or " " in w:
            try:
                out.extend(shlex.split(w.replace("\\\n", " "), comments=True))
            except ValueError:
                out.extend(w.split())
        else:
            out.append(w)
    return out


def flag(words: list[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` in `words`, the last one given."""
    value = None
    for i, w in enumerate(words):
        if w == name and i + 1 < len(words):
            value = words[i + 1]
        elif w.startswith(name + "="):
            value = w[len(name) + 1:]
    return value


def mode_of(doc: Doc) -> tuple[str | None, dict | None]:
    for c in containers(doc):
        mode = flag(argv(c), "--mode")
        if mode in ("coordinator", "worker"):
            return mode, c
    return None, None


def said(value) -> str:
    """A manifest's value as a problem line quotes it."""
    return "not set" if value is None else repr(value) if isinstance(value, str) else str(value)


def as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return None


def token_refs(container: dict) -> list[tuple[str, str]]:
    refs = []
    for e in container.get("env") or []:
        if isinstance(e, dict) and e.get("name") == "ALPHAPULSE_TOKEN":
            ref = obj(obj(e.get("valueFrom")).get("secretKeyRef"))
            refs.append((str(ref.get("name")), str(ref.get("key"))))
    return refs


def check_resources(doc: Doc, problems: Problems) -> int:
    checked = 0
    for c in containers(doc):
        name = c.get("name", "?")
        res = obj(c.get("resources"))
        requests, limits = obj(res.get("requests")), obj(res.get("limits"))
        for what in ("cpu", "memory"):
            r, lim = requests.get(what), limits.get(what)
            if r is None or lim is None:
                problems.add(doc.where(), f"container {name}: {what} needs both a request and a "
                                          "limit (Guaranteed QoS)")
                continue
            rq, lq = quantity(r), quantity(lim)
            if rq is None or lq is None:
                problems.add(doc.where(), f"container {name}: {what} {r!r} / {lim!r} is not a "
                                          "quantity")
            elif rq != lq:
                problems.add(doc.where(), f"container {name}: {what} request {r} is not its "
                                          f"limit {lim}: the pod would not get Guaranteed QoS")
            elif what == "cpu" and lq.denominator != 1:
                problems.add(doc.where(), f"container {name}: cpu {lim} is not a whole number "
                                          "of CPUs: the static CPU manager gives exclusive "
                                          "cores only to integer requests")
        checked += 1
    return checked


def check_shm(doc: Doc, container: dict, problems: Problems) -> None:
    mounts = {m.get("mountPath"): m.get("name") for m in container.get("volumeMounts") or []
              if isinstance(m, dict)}
    volume_name = mounts.get("/dev/shm")
    if volume_name is None:
        problems.add(doc.where(), "the worker mounts nothing at /dev/shm: its rings would live "
                                  "in the container's 64 MiB default")
        return
    volumes = {v.get("name"): v for v in pod_spec(doc).get("volumes") or [] if isinstance(v, dict)}
    empty_dir = obj(volumes.get(volume_name)).get("emptyDir")
    if not isinstance(empty_dir, dict) or empty_dir.get("medium") != "Memory":
        problems.add(doc.where(), f"volume {volume_name} at /dev/shm is not an emptyDir with "
                                  "medium: Memory (the rings must be in memory)")
        return
    size = quantity(empty_dir.get("sizeLimit")) if "sizeLimit" in empty_dir else None
    if size is None:
        problems.add(doc.where(), f"volume {volume_name} at /dev/shm has no sizeLimit")
        return
    memory = quantity(obj(obj(container.get("resources")).get("limits")).get("memory"))
    if memory is not None and size >= memory:
        problems.add(doc.where(), f"/dev/shm sizeLimit {empty_dir['sizeLimit']} is not below "
                                  "the memory limit: the rings count against it, and the "
                                  "processes need memory of their own")


def check_run(docs: list[Doc], problems: Problems) -> dict:
    """The distributed run's rules; returns facts for the summary."""
    facts: dict = {}
    jobs = {"coordinator": [], "worker": []}
    for d in docs:
        if d.kind == "Job":
            mode, container = mode_of(d)
            if mode is None:
                problems.add(d.where(), "a Job that runs neither --mode coordinator nor "
                                        "--mode worker")
            else:
                jobs[mode].append((d, container))
    for mode, found in jobs.items():
        if len(found) != 1:
            problems.add("manifests", f"{len(found)} Jobs run --mode {mode}; exactly one must")
    containers_checked = 0
    for d in docs:
        if d.kind == "Job":
            containers_checked += check_resources(d, problems)
            spec = obj(d.data.get("spec"))
            if as_int(spec.get("ttlSecondsAfterFinished")) is None:
                problems.add(d.where(), "no ttlSecondsAfterFinished: the finished Job and its "
                                        "pods would stay forever")
    facts["containers"] = containers_checked
    if len(jobs["coordinator"]) != 1 or len(jobs["worker"]) != 1:
        return facts
    (cdoc, cont), (wdoc, wcont) = jobs["coordinator"][0], jobs["worker"][0]
    cwords, wwords = argv(cont), argv(wcont)

    # The coordinator.
    port = as_int(flag(cwords, "--port") or DEFAULT_PORT)
    workers = as_int(flag(cwords, "--workers") or DEFAULT_WORKERS)
    bind = flag(cwords, "--bind") or DEFAULT_BIND
    facts.update(port=port, workers=workers)
    if port is None or workers is None:
        problems.add(cdoc.where(), "--port or --workers is not a number")
        return facts
    if bind in ("localhost", "::1") or bind.startswith("127."):
        problems.add(cdoc.where(), f"--bind {bind}: loopback, so workers in other pods cannot "
                                   "reach it; bind 0.0.0.0 (or ::) with a token")
    container_ports = {p.get("name"): as_int(p.get("containerPort"))
                       for p in cont.get("ports") or [] if isinstance(p, dict)}
    if port not in container_ports.values():
        problems.add(cdoc.where(), f"container {cont.get('name')}: no containerPort {port} "
                                   "(its --port)")

    # The workers.
    spec = obj(wdoc.data.get("spec"))
    completions, parallelism = as_int(spec.get("completions")), as_int(spec.get("parallelism"))
    facts.update(completions=completions, parallelism=parallelism)
    if spec.get("completionMode") != "Indexed":
        problems.add(wdoc.where(), f"spec.completionMode is {said(spec.get('completionMode'))}, "
                                   "not 'Indexed': the workers would get no "
                                   "JOB_COMPLETION_INDEX")
    if completions is None or parallelism is None or completions != parallelism:
        problems.add(wdoc.where(), f"spec.parallelism {said(spec.get('parallelism'))} is not "
                                   f"spec.completions {said(spec.get('completions'))}: every "
                                   "worker must run at once")
    if completions is not None and completions != workers:
        problems.add(wdoc.where(), f"spec.completions {completions} is not the coordinator's "
                                   f"--workers {workers}")
    if as_int(spec.get("backoffLimit")) != 0:
        problems.add(wdoc.where(), f"spec.backoffLimit is {said(spec.get('backoffLimit'))}, "
                                   "not 0: a replaced worker joins late and is refused")
    check_shm(wdoc, wcont, problems)

    # The Service between them.
    target = flag(wwords, "--coordinator")
    labels = pod_labels(cdoc)
    services = [d for d in docs if d.kind == "Service"
                and obj(d.data.get("spec")).get("selector")
                and all(labels.get(k) == v
                        for k, v in obj(obj(d.data.get("spec")).get("selector")).items())]
    if len(services) != 1:
        problems.add("manifests", f"{len(services)} Services select the coordinator's pod "
                                  f"(labels {labels}); exactly one must")
    else:
        svc = services[0]
        sspec = obj(svc.data.get("spec"))
        if sspec.get("type", "ClusterIP") != "ClusterIP":
            problems.add(svc.where(), f"type {sspec.get('type')}: a ClusterIP Service is enough "
                                      "for workers in the cluster, and exposes nothing outside")
        ports = [p for p in sspec.get("ports") or [] if isinstance(p, dict)]
        wanted_host = wanted_port = None
        if target is None or ":" not in target:
            problems.add(wdoc.where(), f"--coordinator {target}: not HOST:PORT")
        else:
            wanted_host, _, p = target.rpartition(":")
            wanted_port = as_int(p)
            if wanted_host.split(".")[0] != svc.name:
                problems.add(wdoc.where(), f"--coordinator {target}: not the Service {svc.name}")
        matching = [p for p in ports if as_int(p.get("port")) == wanted_port]
        if wanted_port is not None and not matching:
            problems.add(svc.where(), f"no port {wanted_port}, the port of the workers' "
                                      f"--coordinator {target}")
        for p in matching:
            tp = p.get("targetPort", p.get("port"))
            resolved = container_ports.get(tp) if isinstance(tp, str) and as_int(tp) is None \
                else as_int(tp)
            if resolved != port:
                problems.add(svc.where(), f"port {p.get('port')} targets {tp!r} "
                                          f"(container port {resolved}), not the coordinator's "
                                          f"--port {port}")
        facts.update(service=svc.name, service_port=wanted_port)

    # The token.
    secrets = {}
    for d in docs:
        if d.kind == "Secret":
            keys = set(obj(d.data.get("data"))) | set(obj(d.data.get("stringData")))
            secrets[d.name] = keys
    for d, c in ((cdoc, cont), (wdoc, wcont)):
        refs = token_refs(c)
        if not refs and flag(argv(c), "--token") is None:
            problems.add(d.where(), "no ALPHAPULSE_TOKEN: the coordinator listens beyond "
                                    "loopback only with a token, and a worker must present it")
        for name, key in refs:
            if key not in secrets.get(name, set()):
                problems.add(d.where(), f"ALPHAPULSE_TOKEN comes from Secret {name} key {key}, "
                                        "which these files do not define")
    if token_refs(cont) != token_refs(wcont):
        problems.add(wdoc.where(), "the workers take ALPHAPULSE_TOKEN from another Secret key "
                                   "than the coordinator")
    return facts


# --- main -------------------------------------------------------------------------------------


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    parser.add_argument("--kubernetes-version", action="append", dest="versions",
                        help="a Kubernetes version to validate against (repeatable)")
    parser.add_argument("--no-kubectl", action="store_true",
                        help="do not compare with `kubectl kustomize` even where it is installed")
    opts = parser.parse_args(args)

    missing = [name for name, mod in (("PyYAML", yaml), ("kubernetes-validate",
                                                          kubernetes_validate)) if mod is None]
    if yaml is None:
        if ci():
            print("error: PyYAML and kubernetes-validate are needed (pip install "
                  "kubernetes-validate); CI=true, so their absence fails the check")
            return 1
        print("SKIPPED: the Kubernetes manifests are not checked: PyYAML and kubernetes-validate "
              "are not installed (pip install kubernetes-validate)")
        return 0

    directory = opts.dir
    kustomization, error = load_kustomization(directory)
    if kustomization is None:
        print(f"error: {error}")
        return 2
    problems = Problems()
    docs = load_documents(directory, kustomization, problems)
    render_note = None
    if docs and not opts.no_kubectl:
        render_note = compare_with_kubectl(directory, docs, problems)
    versions = opts.versions
    if kubernetes_validate is not None:
        if not versions:
            versions = [OLDEST_VERSION, kubernetes_validate.latest_version()]
        probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}
        for version in versions:
            try:
                kubernetes_validate.validate(probe, version, strict=True)
            except Exception:
                print(f"error: kubernetes-validate {kubernetes_validate.__version__} has no "
                      f"schema of Kubernetes {version} (its newest: "
                      f"{major_minor(kubernetes_validate.latest_version())})")
                return 2
        validate_schema(docs, versions, problems)
    try:
        facts = check_run(docs, problems)
    except (AttributeError, TypeError, KeyError) as e:
        # Only a document of a shape the schema refuses gets here.
        problems.add("manifests", f"the run's own rules could not be checked on these files "
                                  f"({type(e).__name__}: {e})")
        facts = {}

    if missing and ci():
        problems.add("error", f"{', '.join(missing)} is not installed (pip install "
                              "kubernetes-validate): the manifests were not validated against "
                              "the Kubernetes API schema, and CI=true makes that a failure")
    for line in problems.lines:
        print(line)
    if problems.lines:
        print(f"{len(problems.lines)} problem(s) in {shown(directory)}")
        return 1
    if missing:
        print("SKIPPED: validation against the Kubernetes API schema: kubernetes-validate is not "
              "installed (pip install kubernetes-validate); the run's own rules passed")
        return 0
    files = sorted({shown(d.path) for d in docs})
    schemas = ", ".join(major_minor(v) for v in versions)
    print(f"{len(docs)} objects in {len(files)} files of {shown(directory)} are valid against "
          f"the Kubernetes API schema ({schemas}; kubernetes-validate "
          f"{kubernetes_validate.__version__}, strict)"
          + (f"; {render_note}" if render_note else ""))
    print(f"run: {facts.get('workers')} workers in an Indexed Job (parallelism = completions = "
          f"--workers), Service {facts.get('service')}:{facts.get('service_port')} -> the "
          f"coordinator's --port {facts.get('port')}, requests = limits with whole CPUs in "
          f"{facts.get('containers')} containers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
