"""What every board game shares: the token layout, the `Games` record, and a vectorised engine loop.

A game is a sequence of tokens `BOS m1 m2 ... END PAD ...`: one token per square played, `PASS` when
the player to move has no legal placement but the game goes on, `END` once the game is over. Players
alternate on every token (a pass is a turn), so the player to move after position p is fixed by p.

Boards are [batch, square] int8 tensors: 0 empty, 1 the first player (X / black), 2 the second player
(O / white). A subclass gives the rules for a batch of boards at once (`legal_squares`, `play`,
`is_over`, `outcome`); this module turns them into random legal games (`random_games`, one masked
sample per ply for the whole batch), replays token sequences with legality checks (`replay`), and reads
and writes moves by name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

BOS, END, PASS, PAD = 0, 1, 2, 3
N_SPECIAL = 4  # square s is token N_SPECIAL + s
SPECIAL_NAMES = {BOS: "<bos>", END: "<end>", PASS: "pass", PAD: "<pad>"}
EMPTY, FIRST, SECOND = 0, 1, 2  # board cell values and player ids


@dataclass
class Games:
    """A batch of games as tokens, with the board and the legal next tokens at every position.

    `boards[b, p]` is the board after the token at position p (the start position at BOS; frozen after
    END). `to_move[b, p]` is the player who moves at position p + 1. `legal[b, p, v]` says whether token
    v is a legal token at position p + 1 (all False after END: nothing follows a finished game).
    """

    tokens: torch.Tensor  # [batch, pos] int64
    boards: torch.Tensor  # [batch, pos, square] int8
    to_move: torch.Tensor  # [batch, pos] int8 (FIRST or SECOND)
    legal: torch.Tensor  # [batch, pos, d_vocab] bool
    outcome: torch.Tensor  # [batch] int8: winner (FIRST / SECOND), 0 draw, -1 unfinished (cut at max length)
    valid: torch.Tensor  # [batch] bool: every token legal (always True for generated games)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, rows: torch.Tensor) -> Games:
        """The games at `rows` (a bool mask or indices)."""
        return Games(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @staticmethod
    def cat(parts: list[Games]) -> Games:
        return Games(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Games)})


class Game:
    """Rules of a two-player placement game on a rows x cols board, vectorised over a batch of boards."""

    name: str = "game"
    rows: int
    cols: int

    @property
    def n_squares(self) -> int:
        return self.rows * self.cols

    @property
    def d_vocab(self) -> int:
        return N_SPECIAL + self.n_squares

    @property
    def max_plies(self) -> int:
        """Tokens after BOS in the longest sequence kept (END included); longer games are cut."""
        raise NotImplementedError

    @property
    def seq_len(self) -> int:
        return 1 + self.max_plies

    # ---- rules: subclasses implement these on [batch, square] boards ----
    def initial_board(self, batch: int) -> torch.Tensor:
        raise NotImplementedError

    def legal_squares(self, board: torch.Tensor, player: torch.Tensor) -> torch.Tensor:
        """[batch, square] bool: squares `player` [batch] may play (empty when the game is over)."""
        raise NotImplementedError

    def play(self, board: torch.Tensor, player: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        """Board after `player` plays `square` ([batch] each); the move is assumed legal."""
        raise NotImplementedError

    def is_over(self, board: torch.Tensor, player: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        """[batch] bool: no move follows, given `legal` = legal_squares(board, player)."""
        raise NotImplementedError

    def outcome(self, board: torch.Tensor) -> torch.Tensor:
        """[batch] int8: the winner of a finished game (FIRST / SECOND) or 0 for a draw."""
        raise NotImplementedError

    # ---- shared ----
    def legal_tokens(self, board: torch.Tensor, player: torch.Tensor) -> torch.Tensor:
        """[batch, d_vocab] bool: the legal next tokens: squares, else PASS, else END when the game is over."""
        squares = self.legal_squares(board, player)
        over = self.is_over(board, player, squares)
        out = torch.zeros(board.shape[0], self.d_vocab, dtype=torch.bool, device=board.device)
        out[:, N_SPECIAL:] = squares
        out[:, END] = over
        out[:, PASS] = ~over & ~squares.any(1)
        return out

    def random_games(self, n: int, seed: int | torch.Generator = 0) -> Games:
        """`n` games of uniformly random legal moves, played together (one masked sample per ply)."""
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        return self._run(n, None, gen)

    def replay(self, tokens: torch.Tensor) -> Games:
        """Boards and legal sets along given token sequences [batch, pos]; `valid` marks fully legal games.

        After an illegal token the game is played on as if it were legal (squares are placed, PASS and
        END handled), so the boards stay defined; only `valid` records the fault.
        """
        if tokens.dim() != 2 or tokens.shape[1] < 1:
            raise ValueError(f"tokens must be [batch, pos] with pos >= 1, got shape {tuple(tokens.shape)}")
        return self._run(tokens.shape[0], tokens.long(), None)

    def _run(self, n: int, given: torch.Tensor | None, gen: torch.Generator | None) -> Games:
        n_pos = self.seq_len if given is None else given.shape[1]
        board = self.initial_board(n)
        player = torch.full((n,), FIRST, dtype=torch.int8)
        done = torch.zeros(n, dtype=torch.bool)
        valid = torch.ones(n, dtype=torch.bool) if given is None else given[:, 0] == BOS
        tokens = torch.full((n, n_pos), PAD, dtype=torch.long)
        tokens[:, 0] = BOS
        boards = torch.empty(n, n_pos, self.n_squares, dtype=torch.int8)
        to_move = torch.empty(n, n_pos, dtype=torch.int8)
        legal = torch.zeros(n, n_pos, self.d_vocab, dtype=torch.bool)
        outcome = torch.full((n,), -1, dtype=torch.int8)
        for p in range(n_pos):  # p: the position just written; choose the token at p + 1
            boards[:, p], to_move[:, p] = board, player
            options = self.legal_tokens(board, player) & ~done[:, None]  # [batch, d_vocab]
            legal[:, p] = options
            if p == n_pos - 1:
                break
            if given is None:  # uniform over the legal tokens: the argmax of masked uniform noise
                noise = torch.rand(n, self.d_vocab, generator=gen).masked_fill(~options, -1.0)
                token = torch.where(done, PAD, noise.argmax(1))
            else:
                token = given[:, p + 1]
                ok = options.gather(1, token[:, None]).squeeze(1) | (done & (token == PAD))
                valid &= ok
            tokens[:, p + 1] = token
            is_square = (token >= N_SPECIAL) & ~done
            square = (token - N_SPECIAL).clamp(0, self.n_squares - 1)
            board = torch.where(is_square[:, None], self.play(board, player, square), board)
            ended = ~done & (token == END)
            outcome = torch.where(ended, self.outcome(board), outcome)
            moved = ~done & ~ended & (token != PAD)
            player = torch.where(moved, 3 - player, player).to(torch.int8)
            done = done | ended | (token == PAD)
        return Games(tokens, boards, to_move, legal, outcome, valid)

    # ---- names ----
    def square_name(self, square: int) -> str:
        """Column letter and row number, as in chess and Othello notation: square 0 is 'a1'."""
        row, col = divmod(int(square), self.cols)
        return f"{chr(ord('a') + col)}{row + 1}"

    def token_name(self, token: int) -> str:
        token = int(token)
        if token in SPECIAL_NAMES:
            return SPECIAL_NAMES[token]
        if not N_SPECIAL <= token < self.d_vocab:
            raise ValueError(f"token {token} is not in this game's vocabulary [0, {self.d_vocab})")
        return self.square_name(token - N_SPECIAL)

    def encode(self, moves: list[str | int]) -> torch.Tensor:
        """Tokens [pos] of a game from move names ('c4', 'pass', '<end>') or square numbers; BOS first."""
        names = {self.token_name(t): t for t in range(self.d_vocab)}
        out = [BOS]
        for move in moves:
            if isinstance(move, int):
                if not 0 <= move < self.n_squares:
                    raise ValueError(f"square {move} is off the board: expected 0 <= square < {self.n_squares}")
                out.append(N_SPECIAL + move)
            elif move.lower() in names:
                out.append(names[move.lower()])
            else:
                raise ValueError(f"unknown move {move!r}: expected a square name such as 'a1' or 'pass' / '<end>'")
        return torch.tensor(out, dtype=torch.long)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Move names of one game's tokens [pos], without BOS and padding."""
        return [self.token_name(t) for t in tokens.tolist() if t not in (BOS, PAD)]

    def render(self, board: torch.Tensor, symbols: str = ".XO") -> str:
        """One board [square] as text, row 1 at the top."""
        cells = board.view(self.rows, self.cols).tolist()
        return "\n".join(" ".join(symbols[c] for c in row) for row in cells)


def relative_board(boards: torch.Tensor, to_move: torch.Tensor) -> torch.Tensor:
    """Boards [..., square] relabelled from the mover's side: 0 empty, 1 mine (the player to move), 2 theirs."""
    mover = to_move.unsqueeze(-1)
    return torch.where(boards == EMPTY, 0, torch.where(boards == mover, 1, 2)).to(torch.int8)
