"""Entry point: python run_recbole_usr.py --model=UnifiedSASRec --dataset=Amazon_Beauty [--key=value ...]"""

from recbole_usr.cli import main

if __name__ == "__main__":
    main()
