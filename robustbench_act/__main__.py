"""``python -m robustbench_act`` (also what ``torchrun -m robustbench_act`` runs)."""

from robustbench_act.cli import main

if __name__ == "__main__":
    main()
