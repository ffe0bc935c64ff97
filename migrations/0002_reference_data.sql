-- Reference data every installation needs: the three seat layouts the admin form offers and the
-- Korean/English search keyword pairs. (Demo events, news and the admin account are dev-mode seed data.)
INSERT INTO seat_layouts (name, description, total_seats, layout_config) VALUES
('small_theater', 'Small theater with 265 seats', 265,
 '{"sections":[{"name":"VIP","rows":3,"seatsPerRow":10,"price":150000,"startRow":1},{"name":"R","rows":5,"seatsPerRow":15,"price":100000,"startRow":4},{"name":"S","rows":8,"seatsPerRow":20,"price":70000,"startRow":9}]}'),
('large_theater', 'Large theater with 1250 seats', 1250,
 '{"sections":[{"name":"VIP","rows":5,"seatsPerRow":20,"price":200000,"startRow":1},{"name":"R","rows":10,"seatsPerRow":30,"price":150000,"startRow":6},{"name":"S","rows":15,"seatsPerRow":30,"price":100000,"startRow":16},{"name":"A","rows":10,"seatsPerRow":40,"price":70000,"startRow":31}]}'),
('sports_stadium', 'Sports stadium with 4900 seats', 4900,
 '{"sections":[{"name":"Floor1","rows":20,"seatsPerRow":50,"price":80000,"startRow":1},{"name":"Floor2","rows":30,"seatsPerRow":60,"price":50000,"startRow":21},{"name":"Floor3","rows":30,"seatsPerRow":70,"price":30000,"startRow":51}]}');

INSERT INTO keyword_mappings (korean, english, entity_type) VALUES
('싸이', 'PSY', 'artist'), ('아이유', 'IU', 'artist'), ('방탄소년단', 'BTS', 'artist'), ('방탄', 'BTS', 'artist'),
('비티에스', 'BTS', 'artist'), ('블랙핑크', 'BLACKPINK', 'artist'), ('블핑', 'BLACKPINK', 'artist'),
('임영웅', 'Lim Young Woong', 'artist'), ('뉴진스', 'NewJeans', 'artist'), ('세븐틴', 'SEVENTEEN', 'artist'),
('에스파', 'aespa', 'artist'), ('엔시티 드림', 'NCT DREAM', 'artist'), ('르세라핌', 'LE SSERAFIM', 'artist'),
('아이브', 'IVE', 'artist'), ('스트레이 키즈', 'Stray Kids', 'artist'), ('스키즈', 'Stray Kids', 'artist'),
('트와이스', 'TWICE', 'artist'), ('태양', 'TAEYANG', 'artist'), ('태양', 'SOL', 'artist'),
('지드래곤', 'G-DRAGON', 'artist'), ('지드래곤', 'GD', 'artist'), ('엑소', 'EXO', 'artist'),
('레드벨벳', 'Red Velvet', 'artist'), ('투모로우바이투게더', 'TOMORROW X TOGETHER', 'artist'), ('투바투', 'TXT', 'artist'),
('엔하이픈', 'ENHYPEN', 'artist'), ('있지', 'ITZY', 'artist'), ('지코', 'ZICO', 'artist'), ('텐씨엠', '10CM', 'artist'),
('서울', 'Seoul', 'venue'), ('올림픽', 'Olympic', 'venue'), ('잠실', 'Jamsil', 'venue'), ('고척', 'Gocheok', 'venue'),
('송파', 'Songpa', 'venue'), ('구로', 'Guro', 'venue'), ('용산', 'Yongsan', 'venue'), ('광진', 'Gwangjin', 'venue'),
('체조경기장', 'Gymnastics Arena', 'venue'), ('경기장', 'Stadium', 'venue'), ('돔', 'Dome', 'venue'),
('스카이돔', 'Sky Dome', 'venue'), ('실내체육관', 'Indoor Stadium', 'venue'),
('콘서트', 'Concert', 'general'), ('투어', 'Tour', 'general'), ('공연', 'Performance', 'general'), ('뮤지컬', 'Musical', 'general');
