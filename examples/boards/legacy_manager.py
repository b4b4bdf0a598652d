"""The boards app's own legacy manager, FastAPI-docs style; its bodies delegate to wsmigrate's hub."""

from __future__ import annotations

from wsmigrate import Frame, LegacyConnectionManager


class BoardConnectionManager:
    def __init__(self, hub: LegacyConnectionManager) -> None:
        self.hub = hub

    async def broadcast_to_board(self, board_id: str, message: Frame) -> None:
        await self.hub.broadcast("board", board_id, message)
