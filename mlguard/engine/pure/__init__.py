"""Reference kernels in pure Python: the same facts as the Rust extension ``mlguard_rs``, slower.

They are the fallback when the extension cannot be imported and the oracle of the differential
tests. Each module mirrors one ``mlguard_rs/src/<kernel>.rs``. Use them through
:mod:`mlguard.engine`, not directly.
"""
