"""Othello (Reversi) on a size x size board (6 x 6 by default, so a model trains on a CPU).

Black (player 1) moves first from the four centre discs (white on the main diagonal). A move places a
disc that brackets one or more straight lines of opponent discs (in any of the 8 directions) against
another own disc, and flips them. A player with no such move passes; when neither can move the game
ends and the player with more discs wins.

All of it runs on a batch of boards with tensor ops: for every square and direction the ray of squares
it looks along is precomputed ([square, direction, step], off-board steps point at a sentinel cell), so
the legal moves of every square and the flips of a move are a gather, a cumulative product along the
ray (the run of opponent discs) and a scatter.
"""

from __future__ import annotations

import torch

from .base import EMPTY, FIRST, SECOND, Game

DIRECTIONS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]  # (d_row, d_col)
OFF_BOARD = 3  # value of the sentinel cell that rays run into past the edge


def _rays(rows: int, cols: int) -> torch.Tensor:
    """[square, direction, step] index of the square `step + 1` steps away, or rows * cols off the board.

    Rays run one step past the longest line on the board, so each ends off the board."""
    length = max(rows, cols)
    r = torch.arange(rows).view(rows, 1, 1, 1)
    c = torch.arange(cols).view(1, cols, 1, 1)
    d = torch.tensor(DIRECTIONS).view(1, 1, 8, 1, 2)
    k = torch.arange(1, length + 1).view(1, 1, 1, length)
    rr, cc = r + d[..., 0] * k, c + d[..., 1] * k  # [rows, cols, 8, length]
    on = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
    return torch.where(on, rr * cols + cc, rows * cols).view(rows * cols, 8, length)


class Othello(Game):
    name = "othello"

    def __init__(self, size: int = 6, max_passes: int = 4) -> None:
        if not isinstance(size, int) or size < 4 or size % 2 or size > 26:
            raise ValueError(f"Othello size={size!r} is invalid: expected an even board size from 4 to 26")
        if not isinstance(max_passes, int) or max_passes < 0:
            raise ValueError(f"Othello max_passes={max_passes!r} is invalid: expected an integer >= 0")
        self.rows = self.cols = size
        self.max_passes = max_passes
        self.rays = _rays(size, size)

    @property
    def max_plies(self) -> int:
        return self.n_squares - 4 + self.max_passes + 1  # every empty square, some passes, END

    def initial_board(self, batch: int) -> torch.Tensor:
        board = torch.zeros(batch, self.rows, self.cols, dtype=torch.int8)
        m = self.rows // 2
        board[:, m - 1, m - 1] = board[:, m, m] = SECOND
        board[:, m - 1, m] = board[:, m, m - 1] = FIRST
        return board.flatten(1)

    def _rays_from(self, board: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
        """What lies along `rays` [batch, step, n] on each board: [batch, step, n] (OFF_BOARD past the edge)."""
        padded = torch.cat([board, torch.full((board.shape[0], 1), OFF_BOARD, dtype=board.dtype)], dim=1)
        return padded.gather(1, rays.flatten(1)).view(rays.shape)

    @staticmethod
    def _captures(seen: torch.Tensor, player: torch.Tensor, keep_runs: bool = False) -> tuple:
        """For rays with contents `seen` [batch, step, n]: whether an own disc closes the run of opponent
        discs each ray starts with (a capture) [batch, n], and with `keep_runs` which steps lie on that run
        [batch, step, n]. The loop runs over the steps of a ray (fewer than the board size)."""
        p = player.view(-1, 1).to(seen.dtype)
        on_run = seen[:, 0] == 3 - p  # [batch, n]: every step so far holds an opponent disc
        runs, captures = [on_run], torch.zeros_like(on_run)
        for k in range(1, seen.shape[1]):
            captures |= on_run & (seen[:, k] == p)
            on_run = on_run & (seen[:, k] == 3 - p)
            runs.append(on_run)
        return captures, torch.stack(runs, 1) if keep_runs else None

    def legal_squares(self, board: torch.Tensor, player: torch.Tensor) -> torch.Tensor:
        rays = self.rays.to(board.device).permute(2, 0, 1).flatten(1)  # [step, square * direction]
        seen = self._rays_from(board, rays.expand(board.shape[0], -1, -1))
        captures, _ = self._captures(seen, player)  # [batch, square * direction]
        return (board == EMPTY) & captures.view(board.shape[0], self.n_squares, 8).any(-1)

    def flips(self, board: torch.Tensor, player: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        """[batch, square] bool: the discs that `player` playing `square` turns over."""
        rays = self.rays.to(board.device)[square.long()].transpose(1, 2)  # [batch, step, direction]
        captures, runs = self._captures(self._rays_from(board, rays), player, keep_runs=True)
        flipped = runs & captures[:, None, :]  # [batch, step, direction]
        where = torch.where(flipped, rays, self.n_squares).flatten(1)  # off-board sentinel when not flipped
        mask = torch.zeros(board.shape[0], self.n_squares + 1, dtype=torch.bool, device=board.device)
        return mask.scatter(1, where, True)[:, : self.n_squares]

    def play(self, board: torch.Tensor, player: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        changed = self.flips(board, player, square)
        changed = changed.scatter(1, square[:, None].long(), True)
        return torch.where(changed, player[:, None].to(board.dtype), board)

    def is_over(self, board: torch.Tensor, player: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        stuck = ~legal.any(1)
        over = stuck.clone()
        if stuck.any():  # the opponent's moves matter only where the mover has none
            rows = stuck.nonzero().squeeze(1)
            opponent = (3 - player[rows]).to(torch.int8)
            over[rows] = ~self.legal_squares(board[rows], opponent).any(1)
        return over

    def outcome(self, board: torch.Tensor) -> torch.Tensor:
        black, white = (board == FIRST).sum(1), (board == SECOND).sum(1)
        return torch.where(black > white, FIRST, torch.where(white > black, SECOND, 0)).to(torch.int8)
