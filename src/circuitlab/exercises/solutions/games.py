"""Problem set `games`: vectorised board-game logic on batches of boards, as the games research needs it.

Boards are flat integer arrays [batch, n_squares], squares numbered row by row (square = row * cols +
col), cell values 0 = empty, 1 = the first player (X in tic-tac-toe, black in Othello), 2 = the second
player; `player` arrays hold 1 or 2. Othello boards here are 6 x 6 (36 squares), as in circuitlab's
othello6 model, but write your functions for any even size. Everything works on a whole batch at once:
no Python loops over boards or squares (the checker flags them; a few problems allow a loop over the
8 directions or the steps along a ray, and say so). Run `python problems.py` to test your functions.
"""

import numpy as np

# The 8 winning lines of tic-tac-toe as square indices [line, 3]: rows, columns, diagonals.
LINES = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]])
# Othello's 8 directions as (d_row, d_col).
DIRECTIONS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])


def ttt_winner(boards):
    """Tic-tac-toe winner of each board: 1 or 2 if that player has three in a row, else 0.

    boards: [batch, 9] -> [batch] ints. Index the boards with LINES: boards[:, LINES] is [batch, 8, 3].

    Example: ttt_winner(np.array([[1, 1, 1, 2, 2, 0, 0, 0, 0]])) -> [1].
    """
    lines = boards[:, LINES]  # [batch, line, 3]
    x_won = (lines == 1).all(-1).any(-1)
    o_won = (lines == 2).all(-1).any(-1)
    return np.where(x_won, 1, np.where(o_won, 2, 0))


def ttt_legal_moves(boards):
    """Legal tic-tac-toe moves: the empty squares, none once someone has won.

    boards: [batch, 9] -> [batch, 9] bool.

    Example: the empty board -> all True; a won board -> all False.
    """
    return (boards == 0) & (ttt_winner(boards) == 0)[:, None]


def ttt_boards_from_moves(moves):
    """Replay tic-tac-toe games: moves[b, i] is the square of ply i (player 1 on even plies, 2 on odd),
    -1 once the game has ended.

    moves: [batch, n_plies] ints -> boards [batch, 9] after all the moves. Hint: a scatter into a
    [batch, 10] array whose last column catches the -1 entries.

    Example: ttt_boards_from_moves(np.array([[4, 0, -1]])) -> [[2, 0, 0, 0, 1, 0, 0, 0, 0]].
    """
    batch, n_plies = moves.shape
    player = np.where(np.arange(n_plies) % 2 == 0, 1, 2)  # [ply]
    boards = np.zeros((batch, 10), dtype=np.int64)
    boards[np.arange(batch)[:, None], np.where(moves < 0, 9, moves)] = player
    return boards[:, :9]


def othello_rays(size):
    """For every square and direction, the squares along the ray: rays[s, d, k] is the square k + 1 steps
    from square s in direction DIRECTIONS[d], or size * size (an "off the board" marker) past the edge.

    size: int -> [size * size, 8, size] ints.

    Example: othello_rays(4)[0, 4] (square a1, direction (0, 1)) -> [1, 2, 3, 16].
    """
    row, col = np.divmod(np.arange(size * size), size)  # [square]
    steps = np.arange(1, size + 1)  # [step]
    r = row[:, None, None] + DIRECTIONS[None, :, 0, None] * steps  # [square, direction, step]
    c = col[:, None, None] + DIRECTIONS[None, :, 1, None] * steps
    on = (r >= 0) & (r < size) & (c >= 0) & (c < size)
    return np.where(on, r * size + c, size * size)


def othello_flips(boards, player, squares):
    """The discs that `player` placing a disc on `squares` turns over: along each of the 8 rays from the
    square, a run of one or more opponent discs closed by one of the player's own discs is flipped.

    boards: [batch, n_squares]; player: [batch] (1 or 2); squares: [batch] -> [batch, n_squares] bool.
    Use othello_rays and a padded board (one extra "off board" cell). A Python loop over the steps
    along a ray is allowed.

    Example: on the start position, black (1) playing square 8 (row 1, col 2 on 6 x 6) flips square 14.
    """
    batch, n = boards.shape
    rays = othello_rays(round(n**0.5))[squares]  # [batch, direction, step]
    padded = np.concatenate([boards, np.full((batch, 1), 3)], axis=1)  # 3: off the board
    seen = np.take_along_axis(padded, rays.reshape(batch, -1), axis=1).reshape(rays.shape)
    p = player[:, None]
    on_run = seen[..., 0] == 3 - p  # [batch, direction]: an opponent run so far
    runs, closed = [on_run], np.zeros_like(on_run)
    for k in range(1, seen.shape[-1]):
        closed = closed | (on_run & (seen[..., k] == p))
        on_run = on_run & (seen[..., k] == 3 - p)
        runs.append(on_run)
    flipped = np.stack(runs, axis=-1) & closed[..., None]  # [batch, direction, step]
    out = np.zeros((batch, n + 1), dtype=bool)
    out[np.arange(batch)[:, None], np.where(flipped, rays, n).reshape(batch, -1)] = True
    return out[:, :n]


def othello_legal_moves(boards, player):
    """Legal Othello moves of `player`: the empty squares from which at least one ray captures (a run of
    opponent discs closed by an own disc).

    boards: [batch, n_squares]; player: [batch] -> [batch, n_squares] bool. A Python loop over the
    steps along a ray is allowed.

    Example: on the 6 x 6 start position black has 4 legal moves.
    """
    batch, n = boards.shape
    rays = othello_rays(round(n**0.5))  # [square, direction, step]
    padded = np.concatenate([boards, np.full((batch, 1), 3)], axis=1)
    seen = padded[:, rays]  # [batch, square, direction, step]
    p = player[:, None, None]
    on_run = seen[..., 0] == 3 - p
    closed = np.zeros_like(on_run)
    for k in range(1, seen.shape[-1]):
        closed = closed | (on_run & (seen[..., k] == p))
        on_run = on_run & (seen[..., k] == 3 - p)
    return (boards == 0) & closed.any(-1)


def othello_play(boards, player, squares):
    """The boards after `player` plays `squares` (legal moves): the new disc and every flipped disc
    become the player's.

    boards: [batch, n_squares]; player, squares: [batch] -> new boards [batch, n_squares] (boards unchanged).

    Example: the start position after black plays square 8 has 4 black discs and 1 white.
    """
    changed = othello_flips(boards, player, squares)
    changed[np.arange(len(squares)), squares] = True
    return np.where(changed, player[:, None], boards)


def board_state_labels(boards, to_move):
    """Boards from the side of the player to move, the labels an Othello probe predicts:
    0 = empty, 1 = mine (the player to move), 2 = theirs.

    boards: [batch, n_squares]; to_move: [batch] (1 or 2) -> [batch, n_squares] ints.

    Example: board_state_labels(np.array([[0, 1, 2]]), np.array([2])) -> [[0, 2, 1]].
    """
    return np.where(boards == 0, 0, np.where(boards == to_move[:, None], 1, 2))


def othello_outcome(boards):
    """Winner of finished Othello games by disc count: 1 if black has more discs, 2 if white, 0 if equal.

    boards: [batch, n_squares] -> [batch] ints.

    Example: a board with 20 black and 16 white discs -> 1.
    """
    black, white = (boards == 1).sum(-1), (boards == 2).sum(-1)
    return np.where(black > white, 1, np.where(white > black, 2, 0))


def probe_accuracy(acts, weight, bias, labels):
    """Accuracy of a linear probe per output (e.g. per board square): the predicted class of output o is
    argmax_c (acts weight + bias)[o, c]; rows whose label is -1 are not scored.

    acts: [n, d_model]; weight: [d_model, n_outputs, n_classes]; bias: [n_outputs, n_classes];
    labels: [n, n_outputs] ints (-1 = skip) -> [n_outputs] floats, right / scored (0 when none is scored).

    Example: a probe that always predicts the right label scores 1.0 on every output.
    """
    predicted = (np.einsum("nd,doc->noc", acts, weight) + bias).argmax(-1)  # [n, outputs]
    scored = labels != -1
    right = ((predicted == labels) & scored).sum(0)
    return right / np.maximum(scored.sum(0), 1)
