"""Game rules on hand positions, generated games checked move by move against plain-Python referees,
tokenisation round trips, the game tasks and the legal-move metric."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from circuitlab.games import (
    BOS,
    END,
    N_SPECIAL,
    PAD,
    PASS,
    Othello,
    TicTacToe,
    legal_move_rate,
    relative_board,
)
from circuitlab.tasks import OthelloTask, TicTacToeTask, make_task
from circuitlab.tasks.board_games import game_hash

DIRS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


# ---- plain-Python referees, written from the rules with no tensors ----
def ref_othello_flips(board: list[list[int]], player: int, r: int, c: int) -> list[tuple[int, int]]:
    n, flips = len(board), []
    if board[r][c] != 0:
        return []
    for dr, dc in DIRS:
        run, rr, cc = [], r + dr, c + dc
        while 0 <= rr < n and 0 <= cc < n and board[rr][cc] == 3 - player:
            run.append((rr, cc))
            rr, cc = rr + dr, cc + dc
        if run and 0 <= rr < n and 0 <= cc < n and board[rr][cc] == player:
            flips += run
    return flips


def ref_othello_moves(board: list[list[int]], player: int) -> set[int]:
    n = len(board)
    return {r * n + c for r in range(n) for c in range(n) if ref_othello_flips(board, player, r, c)}


def ref_check_othello_game(tokens: list[int], boards: torch.Tensor, legal: torch.Tensor, size: int) -> int:
    """Replays one game with the referee, asserting every token and board; returns the number of passes."""
    board = [[0] * size for _ in range(size)]
    m = size // 2
    board[m - 1][m - 1] = board[m][m] = 2
    board[m - 1][m] = board[m][m - 1] = 1
    player, passes, ended = 1, 0, False
    for p, token in enumerate(tokens):
        if p > 0:
            mine, theirs = ref_othello_moves(board, player), ref_othello_moves(board, 3 - player)
            if ended:
                assert token == PAD
            elif not mine and not theirs:
                assert token == END
                ended = True
            elif not mine:
                assert token == PASS
                passes += 1
                player = 3 - player
            else:
                square = token - N_SPECIAL
                assert square in mine, f"illegal move {square} at ply {p}"
                r, c = divmod(square, size)
                for rr, cc in [*ref_othello_flips(board, player, r, c), (r, c)]:
                    board[rr][cc] = player
                player = 3 - player
        assert boards[p].tolist() == [v for row in board for v in row]
        if not ended:  # the legal set for the next token
            mine, theirs = ref_othello_moves(board, player), ref_othello_moves(board, 3 - player)
            expect = {N_SPECIAL + s for s in mine} or ({PASS} if theirs else {END})
            assert set(legal[p].nonzero().squeeze(1).tolist()) == expect
        else:
            assert not legal[p].any()
    return passes


def ref_ttt_winner(board: list[int]) -> int:
    lines = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]
    for a, b, c in lines:
        if board[a] and board[a] == board[b] == board[c]:
            return board[a]
    return 0


# ---- hand positions ----
def test_othello_flips_in_all_eight_directions() -> None:
    game = Othello(6)
    board = torch.zeros(6, 6, dtype=torch.int8)
    for dr, dc in DIRS:  # around c3 = (2, 2): a white disc next to it, a black one behind
        board[2 + dr, 2 + dc] = 2
        board[2 + 2 * dr, 2 + 2 * dc] = 1
    board[2, 4], board[2, 5] = 2, 1  # to the right a run of two white discs, closed at the edge by black
    flat = board.flatten()[None]
    black, white = torch.tensor([1], dtype=torch.int8), torch.tensor([2], dtype=torch.int8)
    square = torch.tensor([2 * 6 + 2])
    assert game.legal_squares(flat, black)[0, square].item()
    flipped = game.flips(flat, black, square)[0].view(6, 6)
    expected = torch.zeros(6, 6, dtype=torch.bool)
    for dr, dc in DIRS:
        expected[2 + dr, 2 + dc] = True
    expected[2, 4] = True
    assert torch.equal(flipped, expected)
    after = game.play(flat, black, square)[0].view(6, 6)
    assert (after[expected] == 1).all() and after[2, 2] == 1 and after[2, 5] == 1
    assert int((after == 2).sum()) == 0 and int((after == 1).sum()) == int((board > 0).sum()) + 1
    assert game.square_name(14) == "c3"
    # White on the same spot has nothing to flank: every black disc is on the edge or behind white.
    assert not game.legal_squares(flat, white)[0, square].item()


def test_othello_no_flip_through_gaps_or_off_the_edge() -> None:
    game = Othello(6)
    board = torch.zeros(36, dtype=torch.int8)
    board[1], board[2] = 2, 2  # a1 empty, b1 c1 white, then the edge at... d1 empty: a gap, no closer
    board[6], board[12], board[18] = 2, 0, 1  # a2 white, a3 empty (gap), a4 black
    board[7], board[14] = 2, 2  # b2 c3 white, then d4 empty... e5 black: the gap at d4 breaks the line
    board[28] = 1
    black = torch.tensor([1], dtype=torch.int8)
    assert not game.legal_squares(board[None], black)[0, 0].item()
    assert not game.flips(board[None], black, torch.tensor([0])).any()
    board[3] = 1  # now d1 black closes b1 c1
    assert game.flips(board[None], black, torch.tensor([0]))[0].nonzero().squeeze(1).tolist() == [1, 2]


def test_othello_pass_and_end() -> None:
    game = Othello(6)
    board = torch.zeros(1, 36, dtype=torch.int8)
    board[0, 0], board[0, 1] = 1, 2  # black a1 in the corner, white b1: white cannot flank a corner
    black, white = torch.tensor([1], dtype=torch.int8), torch.tensor([2], dtype=torch.int8)
    assert game.legal_tokens(board, black)[0].nonzero().squeeze(1).tolist() == [N_SPECIAL + 2]  # c1
    assert game.legal_tokens(board, white)[0].nonzero().squeeze(1).tolist() == [PASS]
    board[0, 1] = 1  # black only: nobody can move
    assert game.legal_tokens(board, white)[0].nonzero().squeeze(1).tolist() == [END]
    assert game.outcome(board).item() == 1
    # A replayed game with a forced pass, and the same game with the pass left out (illegal).
    games = game.random_games(40, seed=3)
    with_pass = (games.tokens == PASS).any(1).nonzero().squeeze(1)
    assert len(with_pass) > 0
    row = games.tokens[with_pass[0]]
    assert game.replay(row[None]).valid.item()
    at = int((row == PASS).nonzero()[0])
    dropped = torch.cat([row[:at], row[at + 1 :], torch.tensor([PAD])])
    assert not game.replay(dropped[None]).valid.item()
    with pytest.raises(ValueError, match="even board size"):
        Othello(5)


def test_tictactoe_rules() -> None:
    game = TicTacToe()
    o = torch.tensor([2], dtype=torch.int8)
    board = torch.tensor([[1, 1, 1, 2, 2, 0, 0, 0, 0]], dtype=torch.int8)  # X has the top row
    assert game.winner(board).item() == 1 and game.legal_tokens(board, o)[0].nonzero().squeeze(1).tolist() == [END]
    board = torch.tensor([[2, 1, 1, 1, 2, 0, 1, 0, 2]], dtype=torch.int8)  # O has the diagonal
    assert game.outcome(board).item() == 2
    board = torch.tensor([[1, 2, 1, 1, 2, 2, 2, 1, 1]], dtype=torch.int8)  # full, no line: a draw
    assert game.outcome(board).item() == 0 and game.legal_tokens(board, o)[0].tolist()[END]
    board = torch.tensor([[1, 2, 0, 0, 1, 0, 0, 0, 0]], dtype=torch.int8)
    assert (game.legal_tokens(board, o)[0].nonzero().squeeze(1) - N_SPECIAL).tolist() == [2, 3, 5, 6, 7, 8]
    assert game.play(board, o, torch.tensor([8]))[0].tolist() == [1, 2, 0, 0, 1, 0, 0, 0, 2]
    tokens = game.encode(["b1", "a1", "b2", "a2", "b3", "c3", "<end>"])  # X has column b after b3
    assert not game.replay(tokens[None]).valid.item()  # so O's c3 is illegal: the game ended
    tokens = game.encode(["b1", "a1", "b2", "a2", "b3", "<end>"])
    replayed = game.replay(tokens[None])
    assert replayed.valid.item() and replayed.outcome.item() == 1


# ---- generated games against the referees ----
@pytest.mark.parametrize("size", [4, 6, 8])
def test_generated_othello_games_are_legal_move_by_move(size: int) -> None:
    game = Othello(size)
    games = game.random_games({4: 200, 6: 120, 8: 24}[size], seed=size)
    assert games.valid.all() and (games.outcome >= 0).all()  # every game finished within max_plies
    passes = sum(
        ref_check_othello_game(games.tokens[i].tolist(), games.boards[i], games.legal[i], size)
        for i in range(len(games))
    )
    assert passes > 0  # the referee saw forced passes, and agreed with each
    replayed = game.replay(games.tokens)
    assert replayed.valid.all() and torch.equal(replayed.boards, games.boards)
    assert torch.equal(replayed.legal, games.legal) and torch.equal(replayed.outcome, games.outcome)


def test_generated_tictactoe_games_are_legal_move_by_move() -> None:
    game = TicTacToe()
    games = game.random_games(400, seed=0)
    for i in range(len(games)):
        board, player, ended = [0] * 9, 1, False
        for p, token in enumerate(games.tokens[i].tolist()):
            if p > 0:
                over = ref_ttt_winner(board) or all(board)
                if ended:
                    assert token == PAD
                elif over:
                    assert token == END
                    ended = True
                    assert games.outcome[i].item() == ref_ttt_winner(board)
                else:
                    assert board[token - N_SPECIAL] == 0
                    board[token - N_SPECIAL] = player
                    player = 3 - player
            assert games.boards[i, p].tolist() == board
            if not ended:
                assert games.to_move[i, p].item() == player
    first = games.tokens[:, 1] - N_SPECIAL
    assert len(set(first.tolist())) == 9  # every opening square appears: the sampler is not stuck
    # Known frequencies under uniformly random play: X wins 58.5%, O 28.8%, draws 12.7%.
    big = game.random_games(4000, seed=1).outcome
    assert abs(float((big == 1).float().mean()) - 0.585) < 0.03
    assert abs(float((big == 0).float().mean()) - 0.127) < 0.03


def test_tokenisation_round_trip_and_relative_boards() -> None:
    game = Othello(6)
    games = game.random_games(20, seed=0)
    for row in games.tokens:
        names = game.decode(row)
        assert names[-1] == "<end>" and all(n in ("pass", "<end>") or len(n) == 2 for n in names)
        n = len(names) + 1
        assert torch.equal(game.encode(names), row[:n]) and (row[n:] == PAD).all()
    assert game.encode([0, "a2", "PASS"]).tolist() == [BOS, N_SPECIAL, N_SPECIAL + 6, PASS]
    with pytest.raises(ValueError, match="unknown move 'z9'"):
        game.encode(["z9"])
    with pytest.raises(ValueError, match="off the board"):
        game.encode([36])
    rel = relative_board(games.boards, games.to_move)
    mover = games.to_move[..., None]
    assert torch.equal(rel == 1, (games.boards == mover)) and torch.equal(rel == 0, games.boards == 0)
    assert game.render(games.boards[0, 0]).splitlines()[2] == ". . O X . ."


# ---- tasks and the metric ----
def test_game_tasks_targets_splits_and_metric() -> None:
    task = OthelloTask(size=6)
    batch = task.generate(32, seed=5)
    assert torch.equal(batch.tokens, task.generate(32, seed=5).tokens)
    last = batch.loss_mask.sum(1)  # positions 0 .. END-1 are scored: the END token is the last target
    assert (batch.targets[torch.arange(32), last - 1] == END).all()
    assert torch.equal(batch.targets[:, :-1][batch.loss_mask[:, :-1]], batch.tokens[:, 1:][batch.loss_mask[:, :-1]])
    assert batch.metadata["legal"].gather(-1, batch.targets[..., None]).squeeze(-1)[batch.loss_mask].all()
    # Held-out games: train and test splits never share a game.
    test = dataclasses.replace(task, split="test").generate(64, seed=0)
    assert (game_hash(test.tokens) < 100).all() and (game_hash(batch.tokens) >= 100).all()
    assert TicTacToeTask(holdout=0.5, split="test").generate(8, 0).tokens.shape == (8, 11)
    with pytest.raises(ValueError, match="holdout"):
        TicTacToeTask(holdout=0.0, split="test")
    with pytest.raises(ValueError, match="size"):
        make_task("othello", size=7)
    # The metric: logits that put the most mass on a legal token score 1, on an illegal one 0.
    legal = batch.metadata["legal"].float()
    assert legal_move_rate(legal * 5 + 0.1 * torch.rand(legal.shape), batch) == 1.0
    assert legal_move_rate(-legal * 5, batch) < 0.05
    wider = torch.cat([legal, torch.full((*legal.shape[:2], 3), 9.0)], -1)  # a token outside the game wins
    assert legal_move_rate(wider, batch) == 0.0
