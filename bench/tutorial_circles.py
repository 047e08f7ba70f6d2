"""The tutorial script that nncli's circles example replaces: the whole process is the
baseline for `nncli train experiments/circles.yaml` end to end (bench/run.py times both).

It is what most PyTorch tutorials write: scikit-learn makes and splits the data, a
DataLoader batches it, `.item()` reads the loss every batch, the test split is evaluated
after every epoch and printed. It writes nothing.
"""

from __future__ import annotations

import torch
from sklearn.datasets import make_circles
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(42)
X, y = make_circles(n_samples=1000, noise=0.03, random_state=42)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, random_state=42, stratify=y
)
X_train, X_test = (
    torch.tensor(X_train, dtype=torch.float32),
    torch.tensor(X_test, dtype=torch.float32),
)
y_train = torch.tensor(y_train, dtype=torch.float32).unsqueeze(1)
y_test = torch.tensor(y_test, dtype=torch.float32).unsqueeze(1)

model = nn.Sequential(nn.Linear(2, 16), nn.GELU(), nn.Linear(16, 1), nn.Sigmoid())
loss_fn = nn.BCELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
loader = DataLoader(TensorDataset(X_train, y_train), batch_size=32, shuffle=True)

for epoch in range(1, 21):
    model.train()
    total, correct = 0.0, 0
    for xb, yb in loader:
        out = model(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
        correct += ((out > 0.5).float() == yb).sum().item()
    model.eval()
    with torch.no_grad():
        out = model(X_test)
        test_loss = loss_fn(out, y_test).item()
        test_acc = ((out > 0.5).float() == y_test).float().mean().item()
    print(
        f"epoch {epoch:2d}  train_loss {total / len(X_train):.4f}  "
        f"train_accuracy {correct / len(X_train):.4f}  test_loss {test_loss:.4f}  "
        f"test_accuracy {test_acc:.4f}"
    )
