"""Reference solutions of the problem sets, one module per set (never written into a learner's folder).

Each public function is a problem: `circuitlab exercises new` writes its signature and docstring, with a
body that raises NotImplementedError, into problems.py. Solutions use NumPy only, like the learner.
"""
