"""Board games as token sequences: exact rules, vectorised random legal games, boards after every move.

`TicTacToe()` and `Othello(size=6)` share the engine in `base` (tokens `BOS moves... END`, with `PASS`
where a player cannot move); `circuitlab.tasks.TicTacToeTask` / `OthelloTask` make them next-move prediction
tasks for `train`, and `legal_move_rate` scores the top-1 moves of a model.
"""

from .base import BOS, EMPTY, END, FIRST, N_SPECIAL, PAD, PASS, SECOND, Game, Games, relative_board
from .metrics import legal_move_rate, model_legal_move_rate, register_legal_move_rate, top1_legal
from .othello import Othello
from .tictactoe import TicTacToe

__all__ = [
    "BOS",
    "EMPTY",
    "END",
    "FIRST",
    "N_SPECIAL",
    "PAD",
    "PASS",
    "SECOND",
    "Game",
    "Games",
    "Othello",
    "TicTacToe",
    "legal_move_rate",
    "model_legal_move_rate",
    "register_legal_move_rate",
    "relative_board",
    "top1_legal",
]
