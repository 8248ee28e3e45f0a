"""Tic-tac-toe on a 3 x 3 board: X (player 1) moves first; three in a row wins; a full board is a draw.

Squares are numbered row by row (0 = a1 top left, 8 = c3). A game is at most 9 moves and END.
"""

from __future__ import annotations

import torch

from .base import EMPTY, FIRST, SECOND, Game

# The 8 winning lines as square indices [line, 3]: rows, columns, diagonals.
LINES = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]])


class TicTacToe(Game):
    name = "tictactoe"
    rows = 3
    cols = 3

    @property
    def max_plies(self) -> int:
        return self.n_squares + 1  # every square, then END

    def initial_board(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.n_squares, dtype=torch.int8)

    def winner(self, board: torch.Tensor) -> torch.Tensor:
        """[batch] int8: the player with three in a row, else 0 (rules allow at most one)."""
        lines = board[:, LINES]  # [batch, line, 3]
        x_won = (lines == FIRST).all(-1).any(-1)
        o_won = (lines == SECOND).all(-1).any(-1)
        return torch.where(x_won, FIRST, torch.where(o_won, SECOND, 0)).to(torch.int8)

    def legal_squares(self, board: torch.Tensor, player: torch.Tensor) -> torch.Tensor:
        return (board == EMPTY) & (self.winner(board) == 0)[:, None]

    def play(self, board: torch.Tensor, player: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        return board.scatter(1, square[:, None].long(), player[:, None].to(board.dtype))

    def is_over(self, board: torch.Tensor, player: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        return ~legal.any(1)  # someone won, or the board is full

    def outcome(self, board: torch.Tensor) -> torch.Tensor:
        return self.winner(board)
