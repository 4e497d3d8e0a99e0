"""Kubernetes: a RuntimeClass whose handler is the CRI handler `krun`.

The cluster side is one object; the node side is the handler in containerd's or CRI-O's
configuration (`krun install --engine containerd|crio` on every node). Printed for
`kubectl apply -f -`, or written to --output.
"""

from __future__ import annotations

from krun.engines import Change, Context, Result, read

MANIFEST = """\
# RuntimeClass for krun. Each node needs the CRI runtime handler `krun`:
#   krun install --engine containerd   (or --engine crio)
# Pods choose it with `runtimeClassName: krun`; the annotation
# app.kontain.version: "1" runs a container under Kontain (KM).
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: krun
handler: krun
"""


def install(ctx: Context) -> Result:
    if ctx.output is None:
        return Result(stdout=MANIFEST, notes=["kubernetes: apply with `kubectl apply -f -`"])
    return Result([Change(ctx.output, read(ctx.output), MANIFEST)],
                  [f"kubernetes: RuntimeClass krun in {ctx.output}: kubectl apply -f "
                   f"{ctx.output}"])


def uninstall(ctx: Context) -> Result:
    if ctx.output is None:
        return Result(notes=["kubernetes: remove it with `kubectl delete runtimeclass krun`"])
    old = read(ctx.output)
    if old != MANIFEST:  # only a manifest krun wrote, never some other file
        return Result(notes=[f"kubernetes: {ctx.output} is not krun's manifest; left alone"])
    return Result([Change(ctx.output, old, None)],
                  [f"kubernetes: removed {ctx.output}; kubectl delete runtimeclass krun"])
