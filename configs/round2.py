"""python -m launch.evolve --config=configs/round2.py --config.data.train_file=/path/to/problems.jsonl

Round 2: the round-1 policy, terminal-guided MCTS, 16 rollouts, no PPM. See configs/paper.py for the recipe.
"""

from configs.paper import round_config


def get_config():
    return round_config(2)
