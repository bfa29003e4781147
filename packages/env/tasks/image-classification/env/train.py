"""Baseline: a small CNN on the 16x16 colour shape images. Writes submission.csv (id,label)."""
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_num_threads(1)

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')
# (N, 16, 16, 3) uint8 -> (N, 3, 16, 16) float in [0, 1]
X = torch.tensor(np.load('data/train_images.npy'), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
X_test = torch.tensor(np.load('data/test_images.npy'), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
y = torch.tensor(train['label'].to_numpy())

# hold out the last 500 training images to report validation accuracy
X_train, y_train, X_val, y_val = X[:-500], y[:-500], X[-500:], y[-500:]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def predict(model, images):
    model.eval()
    with torch.no_grad():
        return model(images).argmax(1)


model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
epochs, batch_size = 5, 64
for epoch in range(epochs):
    model.train()
    perm = torch.randperm(len(X_train))
    for i in range(0, len(perm), batch_size):
        idx = perm[i:i + batch_size]
        xb, yb = X_train[idx], y_train[idx]
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    val_acc = (predict(model, X_val) == y_val).float().mean().item()
    print(f'epoch {epoch + 1}: train loss {loss.item():.3f}, validation accuracy {val_acc:.3f}')

pd.DataFrame({'id': test['id'], 'label': predict(model, X_test).numpy()}).to_csv('submission.csv', index=False)
