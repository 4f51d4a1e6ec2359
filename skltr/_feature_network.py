"""The frozen network as a feature map: its output, or a named layer's, per row.

The layer is captured with a forward hook that stops the forward pass there,
so a network is not run past its feature layer.
"""

import difflib
import threading

from torch import nn

# Which FeatureNetworks are inside forward, per thread: a flag on the module
# would let one thread's forward end another's capture, and a thread-local
# attribute would not pickle.
_THREAD_STATE = threading.local()


def _capturing_in_this_thread():
    if not hasattr(_THREAD_STATE, "networks"):
        _THREAD_STATE.networks = set()
    return _THREAD_STATE.networks


class _LayerReached(Exception):
    """Raised by the hook on the feature layer to skip the rest of the network."""


class FeatureNetwork(nn.Module):
    """A backbone's output, or a named layer's, as (batch, n_features).

    A 4-d output (batch, channels, height, width) is averaged over its spatial
    positions; any other output is flattened per sample.
    """

    def __init__(self, network, layer=None):
        super().__init__()
        self.network = network
        self.layer = layer
        if layer is not None:
            modules = dict(network.named_modules())
            if layer not in modules or layer == "":
                close = difflib.get_close_matches(layer, list(modules), n=5)
                hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(
                    f"The network has no layer {layer!r}.{hint} Layer names are "
                    "those of network.named_modules()."
                )
            modules[layer].register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        # Only inside this thread's forward: the wrapped network still runs
        # whole on its own, and in other threads.
        if id(self) in _capturing_in_this_thread():
            raise _LayerReached(output)

    def forward(self, x):
        if self.layer is None:
            output = self.network(x)
        else:
            capturing = _capturing_in_this_thread()
            capturing.add(id(self))
            try:
                self.network(x)
            except _LayerReached as reached:
                output = reached.args[0]
            else:  # pragma: no cover - the hooked layer always runs
                raise RuntimeError(f"Layer {self.layer!r} did not run.")
            finally:
                capturing.discard(id(self))
        if isinstance(output, tuple | list):
            output = output[0]
        if output.ndim == 4:
            return output.mean(dim=(2, 3))
        return output.flatten(1)
